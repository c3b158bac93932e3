package objectstore

import (
	"context"
	"errors"
	"io/fs"
	"os/exec"
	"strings"
	"testing"
)

func mapEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func mapFiles(m map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if v, ok := m[name]; ok {
			return []byte(v), nil
		}
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
}

func TestConfigFromEnv(t *testing.T) {
	full := map[string]string{
		"EPOCH_S3_ENDPOINT":   "http://127.0.0.1:9000",
		"EPOCH_S3_ACCESS_KEY": "ak",
		"EPOCH_S3_SECRET_KEY": "sk",
		"EPOCH_S3_BUCKET":     "b",
	}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range full {
			m[k] = v
		}
		for k, v := range extra {
			if v == "-" {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	tests := []struct {
		name    string
		prefix  string
		env     map[string]string
		files   map[string]string
		want    Config
		wantErr string // substring; "" means success
	}{
		{
			name: "env only",
			env:  full,
			want: Config{Endpoint: "http://127.0.0.1:9000", AccessKey: "ak", SecretKey: "sk", Bucket: "b", Prefix: "epoch/"},
		},
		{
			name: "secure inferred from https",
			env:  with(map[string]string{"EPOCH_S3_ENDPOINT": "https://s3.example.com", "EPOCH_S3_REGION": "eu-1", "EPOCH_S3_PREFIX": "x/y"}),
			want: Config{Endpoint: "https://s3.example.com", AccessKey: "ak", SecretKey: "sk", Bucket: "b", Region: "eu-1", Prefix: "x/y", Secure: true},
		},
		{
			name: "no scheme defaults to secure",
			env:  with(map[string]string{"EPOCH_S3_ENDPOINT": "s3.example.com"}),
			want: Config{Endpoint: "s3.example.com", AccessKey: "ak", SecretKey: "sk", Bucket: "b", Prefix: "epoch/", Secure: true},
		},
		{
			name: "explicit insecure without scheme",
			env:  with(map[string]string{"EPOCH_S3_ENDPOINT": "minio:9000", "EPOCH_S3_SECURE": "false"}),
			want: Config{Endpoint: "minio:9000", AccessKey: "ak", SecretKey: "sk", Bucket: "b", Prefix: "epoch/"},
		},
		{
			name:    "secure contradicts scheme",
			env:     with(map[string]string{"EPOCH_S3_SECURE": "true"}),
			wantErr: "EPOCH_S3_SECURE=true contradicts",
		},
		{
			name:    "secure not a boolean",
			env:     with(map[string]string{"EPOCH_S3_ENDPOINT": "minio:9000", "EPOCH_S3_SECURE": "maybe"}),
			wantErr: `EPOCH_S3_SECURE="maybe" is not a boolean`,
		},
		{
			name:    "missing access key is named",
			env:     with(map[string]string{"EPOCH_S3_ACCESS_KEY": "-"}),
			wantErr: "EPOCH_S3_ACCESS_KEY is not set",
		},
		{
			name:    "empty variable counts as unset",
			env:     with(map[string]string{"EPOCH_S3_BUCKET": ""}),
			wantErr: "EPOCH_S3_BUCKET is not set",
		},
		{
			name:    "nothing set names all required",
			env:     map[string]string{},
			wantErr: "EPOCH_S3_ENDPOINT, EPOCH_S3_ACCESS_KEY, EPOCH_S3_SECRET_KEY, EPOCH_S3_BUCKET are not set",
		},
		{
			name:    "several missing",
			env:     map[string]string{"EPOCH_S3_ENDPOINT": "h:1"},
			wantErr: "EPOCH_S3_ACCESS_KEY, EPOCH_S3_SECRET_KEY, EPOCH_S3_BUCKET are not set",
		},
		{
			name: "default env file fills gaps",
			env:  map[string]string{"HOME": "/home/u", "EPOCH_S3_ENDPOINT": "http://env:1", "EPOCH_S3_BUCKET": "envbucket"},
			files: map[string]string{"/home/u/.config/epoch/s3.env": `
# comment
export EPOCH_S3_ENDPOINT=http://file:2
EPOCH_S3_ACCESS_KEY="file ak"
EPOCH_S3_SECRET_KEY='file sk'
EPOCH_S3_BUCKET=filebucket # trailing comment
`},
			want: Config{Endpoint: "http://env:1", AccessKey: "file ak", SecretKey: "file sk", Bucket: "envbucket", Prefix: "epoch/"},
		},
		{
			name:   "explicit env file, other prefix",
			prefix: "EPOCH_TEST_S3",
			env:    map[string]string{"HOME": "/home/u", "EPOCH_TEST_S3_ENV_FILE": "/etc/s3.env", "EPOCH_TEST_S3_ACCESS_KEY": "envak"},
			files:  map[string]string{"/etc/s3.env": "EPOCH_TEST_S3_ENDPOINT=https://f\nEPOCH_TEST_S3_ACCESS_KEY=fileak\nEPOCH_TEST_S3_SECRET_KEY=s\nEPOCH_TEST_S3_BUCKET=bk\n"},
			want:   Config{Endpoint: "https://f", AccessKey: "envak", SecretKey: "s", Bucket: "bk", Prefix: "epoch/", Secure: true},
		},
		{
			name:    "explicit env file missing",
			env:     with(map[string]string{"EPOCH_S3_ENV_FILE": "/nope.env"}),
			wantErr: "/nope.env",
		},
		{
			name:    "env file syntax error",
			env:     with(map[string]string{"EPOCH_S3_ENV_FILE": "/bad.env"}),
			files:   map[string]string{"/bad.env": "just words\n"},
			wantErr: "line 1",
		},
		{
			name: "file endpoint needs no keys",
			env:  map[string]string{"EPOCH_S3_ENDPOINT": "file:///srv/store"},
			want: Config{Endpoint: "file:///srv/store", Prefix: "epoch/"},
		},
		{
			name: "bare absolute path is local",
			env:  map[string]string{"EPOCH_S3_ENDPOINT": "/srv/store"},
			want: Config{Endpoint: "/srv/store", Prefix: "epoch/"},
		},
		{
			name:    "relative file endpoint",
			env:     map[string]string{"EPOCH_S3_ENDPOINT": "file://rel/dir"},
			wantErr: "absolute",
		},
		{
			name:    "endpoint with a path",
			env:     with(map[string]string{"EPOCH_S3_ENDPOINT": "http://h:1/bucket"}),
			wantErr: "host[:port]",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := configFromEnv(tt.prefix, mapEnv(tt.env), mapFiles(tt.files))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrConfig) {
					t.Fatalf("err = %v, want ErrConfig containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *cfg != tt.want {
				t.Errorf("config = %+v\nwant     %+v", *cfg, tt.want)
			}
		})
	}
}

func TestConfig_EffectivePrefixAndEndpoint(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "epoch/"}, {"/", ""}, {"a", "a/"}, {"a/b/", "a/b/"}, {"/a/", "a/"},
	} {
		if got := (&Config{Prefix: tc.in}).EffectivePrefix(); got != tc.want {
			t.Errorf("EffectivePrefix(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct {
		ep     string
		secure bool
		host   string
		tls    bool
	}{
		{"http://h:1", true, "h:1", false},
		{"https://h:1/", false, "h:1", true},
		{"h:1", true, "h:1", true},
		{"h:1", false, "h:1", false},
	} {
		host, tls, err := (&Config{Endpoint: tc.ep, Secure: tc.secure}).s3Endpoint()
		if err != nil || host != tc.host || tls != tc.tls {
			t.Errorf("s3Endpoint(%q, %v) = %q, %v, %v", tc.ep, tc.secure, host, tls, err)
		}
	}
	if _, err := New(&Config{Endpoint: "h:1", AccessKey: "a"}); !errors.Is(err, ErrConfig) ||
		!strings.Contains(err.Error(), "SecretKey, Bucket") {
		t.Errorf("New with missing fields: %v", err)
	}
	c, err := New(&Config{Endpoint: "http://h:1", AccessKey: "a", SecretKey: "topsecret", Bucket: "bk"})
	if err != nil {
		t.Fatal(err)
	}
	if s := c.String(); s != "s3://bk/epoch/ at http://h:1" {
		t.Errorf("String() = %q", s)
	}
	dir := t.TempDir()
	c, err = New(&Config{Endpoint: "file://" + dir})
	if err != nil {
		t.Fatal(err)
	}
	if s := c.String(); s != "file://"+dir {
		t.Errorf("String() = %q", s)
	}
}

const kubectlJSON = `{
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "agent-env", "namespace": "prod"},
    "data": {
        "EPOCH_S3_ENDPOINT": "https://s3.internal:443",
        "EPOCH_S3_ACCESS_KEY": "cmak",
        "EPOCH_S3_SECRET_KEY": "cmsk",
        "EPOCH_S3_BUCKET": "snapshots",
        "EPOCH_S3_PREFIX": "epoch/",
        "OTHER": "ignored"
    }
}`

func TestParseConfigMap(t *testing.T) {
	data, err := parseConfigMap([]byte(kubectlJSON))
	if err != nil || data["EPOCH_S3_BUCKET"] != "snapshots" || len(data) != 6 {
		t.Fatalf("data = %v, %v", data, err)
	}
	for _, bad := range []string{`{`, `{"kind":"Secret","data":{}}`, `[]`} {
		if _, err := parseConfigMap([]byte(bad)); !errors.Is(err, ErrConfig) {
			t.Errorf("parse %s: %v", bad, err)
		}
	}
	if data, err := parseConfigMap([]byte(`{"kind":"ConfigMap"}`)); err != nil || len(data) != 0 {
		t.Errorf("configmap without data: %v, %v", data, err)
	}
}

func TestConfigFromConfigMap(t *testing.T) {
	token := map[string]string{
		saDir + "/token":     "tok\n",
		saDir + "/ca.crt":    "CA",
		saDir + "/namespace": "podns\n",
	}
	wantCM := Config{Endpoint: "https://s3.internal:443", AccessKey: "cmak", SecretKey: "cmsk", Bucket: "snapshots", Prefix: "epoch/", Secure: true}
	envOnly := map[string]string{
		"EPOCH_S3_ENDPOINT": "http://env:1", "EPOCH_S3_ACCESS_KEY": "a", "EPOCH_S3_SECRET_KEY": "s", "EPOCH_S3_BUCKET": "b",
	}
	wantEnv := Config{Endpoint: "http://env:1", AccessKey: "a", SecretKey: "s", Bucket: "b", Prefix: "epoch/"}
	errKubectl := errors.New("kubectl: connection refused")

	tests := []struct {
		name      string
		namespace string
		env       map[string]string
		files     map[string]string
		podDoc    string
		podErr    error
		kubectl   string
		kubectlEr error
		want      Config
		wantErr   string
		wantSrc   string // "pod", "kubectl" or "" (neither consulted)
	}{
		{
			name: "in pod uses the API", env: map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1"},
			files: token, podDoc: kubectlJSON, want: wantCM, wantSrc: "pod",
		},
		{
			name: "in pod API error is not papered over", env: map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1"},
			files: token, podErr: errors.New("HTTP 403"), wantErr: "read configmap agent-env from the Kubernetes API: HTTP 403", wantSrc: "pod",
		},
		{
			name: "service host without token uses kubectl", namespace: "prod",
			env: map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, kubectl: kubectlJSON, want: wantCM, wantSrc: "kubectl",
		},
		{
			name: "kubectl", namespace: "prod", kubectl: kubectlJSON, want: wantCM, wantSrc: "kubectl",
		},
		{
			name: "environment fills what the configmap lacks", namespace: "prod",
			env:     map[string]string{"EPOCH_S3_SECRET_KEY": "fromenv", "EPOCH_S3_BUCKET": "envbucket"},
			kubectl: `{"kind":"ConfigMap","data":{"EPOCH_S3_ENDPOINT":"http://h:1","EPOCH_S3_ACCESS_KEY":"k","EPOCH_S3_BUCKET":"cmbucket"}}`,
			want:    Config{Endpoint: "http://h:1", AccessKey: "k", SecretKey: "fromenv", Bucket: "cmbucket", Prefix: "epoch/"},
			wantSrc: "kubectl",
		},
		{
			name: "configmap missing a key names it", namespace: "prod",
			kubectl: `{"kind":"ConfigMap","data":{"EPOCH_S3_ENDPOINT":"http://h:1","EPOCH_S3_SECRET_KEY":"s","EPOCH_S3_BUCKET":"b"}}`,
			wantErr: "configmap prod/agent-env: object store configuration: EPOCH_S3_ACCESS_KEY is not set", wantSrc: "kubectl",
		},
		{
			name: "kubectl fails, environment works", namespace: "prod", env: envOnly,
			kubectlEr: errKubectl, want: wantEnv, wantSrc: "kubectl",
		},
		{
			name: "kubectl missing, environment works", env: envOnly,
			kubectlEr: exec.ErrNotFound, want: wantEnv, wantSrc: "kubectl",
		},
		{
			name: "kubectl fails and environment incomplete", namespace: "prod",
			kubectlEr: errKubectl, wantErr: "kubectl: connection refused; from the environment: object store configuration: EPOCH_S3_ENDPOINT", wantSrc: "kubectl",
		},
		{
			name: "invalid namespace", namespace: "../x", wantErr: "not a valid Kubernetes name",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var src string
			cfg, err := configFromConfigMap(t.Context(), tt.namespace, "agent-env", "", configMapSources{
				getenv:   mapEnv(tt.env),
				readFile: mapFiles(tt.files),
				inPod: func(_ context.Context, host, port string, tok, ca []byte, ns, name string) ([]byte, error) {
					src = "pod"
					if host != "10.0.0.1" || port != "443" || string(tok) != "tok" || string(ca) != "CA" || ns != "podns" || name != "agent-env" {
						t.Errorf("inPod(%q, %q, %q, %q, %q, %q)", host, port, tok, ca, ns, name)
					}
					return []byte(tt.podDoc), tt.podErr
				},
				kubectl: func(_ context.Context, ns, name string) ([]byte, error) {
					src = "kubectl"
					if ns != tt.namespace || name != "agent-env" {
						t.Errorf("kubectl(%q, %q)", ns, name)
					}
					return []byte(tt.kubectl), tt.kubectlEr
				},
			})
			if src != tt.wantSrc {
				t.Errorf("source = %q, want %q", src, tt.wantSrc)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *cfg != tt.want {
				t.Errorf("config = %+v\nwant     %+v", *cfg, tt.want)
			}
		})
	}
}
