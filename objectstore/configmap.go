package objectstore

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"
)

const (
	saDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	// configMapTimeout bounds ConfigFromConfigMap, which has no ctx.
	configMapTimeout = 30 * time.Second
	// maxConfigMapBytes caps what we read from the API or kubectl.
	maxConfigMapBytes = 4 << 20
)

// k8sName matches namespace and ConfigMap names (DNS subdomains), so they
// are safe in an API path and as kubectl arguments.
var k8sName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)

// ConfigFromConfigMap is ConfigFromConfigMapContext with a 30 s timeout.
func ConfigFromConfigMap(namespace, name, prefix string) (*Config, error) {
	ctx, cancel := context.WithTimeout(context.Background(), configMapTimeout)
	defer cancel()
	return ConfigFromConfigMapContext(ctx, namespace, name, prefix)
}

// ConfigFromConfigMapContext reads the <prefix>_* settings (see
// ConfigFromEnv) from the data of ConfigMap name in namespace; variables
// of the process environment fill keys the ConfigMap lacks (e.g. a secret
// key injected from a Secret). Where the ConfigMap comes from, in order:
//
//  1. inside a pod (KUBERNETES_SERVICE_HOST set and the service account
//     token readable): the Kubernetes API over HTTPS with the token and CA;
//     a failure here is returned, not papered over;
//  2. otherwise `kubectl get configmap NAME -n NS -o json`;
//  3. if kubectl is missing or fails: ConfigFromEnv(prefix).
//
// namespace "" means the pod's namespace (or kubectl's current one).
func ConfigFromConfigMapContext(ctx context.Context, namespace, name, prefix string) (*Config, error) {
	return configFromConfigMap(ctx, namespace, name, prefix, configMapSources{
		getenv:   os.LookupEnv,
		readFile: os.ReadFile,
		inPod:    fetchConfigMapInPod,
		kubectl:  fetchConfigMapKubectl,
	})
}

// configMapSources are the outside world of configFromConfigMap, injected
// so tests run without a cluster.
type configMapSources struct {
	getenv   func(string) (string, bool)
	readFile func(string) ([]byte, error)
	inPod    func(ctx context.Context, host, port string, token, ca []byte, namespace, name string) ([]byte, error)
	kubectl  func(ctx context.Context, namespace, name string) ([]byte, error)
}

func configFromConfigMap(ctx context.Context, namespace, name, prefix string, src configMapSources) (*Config, error) {
	if prefix == "" {
		prefix = DefaultEnvPrefix
	}
	if !k8sName.MatchString(name) {
		return nil, fmt.Errorf("%w: configmap name %q is not a valid Kubernetes name", ErrConfig, name)
	}
	if namespace != "" && !k8sName.MatchString(namespace) {
		return nil, fmt.Errorf("%w: namespace %q is not a valid Kubernetes name", ErrConfig, namespace)
	}
	where := "configmap " + name
	if namespace != "" {
		where = "configmap " + namespace + "/" + name
	}

	host, inPod := nonEmpty(src.getenv, "KUBERNETES_SERVICE_HOST")
	token, tokenErr := src.readFile(saDir + "/token")
	var doc []byte
	if inPod && tokenErr == nil {
		var err error
		if doc, err = fetchInPod(ctx, src, host, bytes.TrimSpace(token), namespace, name); err != nil {
			return nil, fmt.Errorf("read %s from the Kubernetes API: %w", where, err)
		}
	} else {
		var err error
		if doc, err = src.kubectl(ctx, namespace, name); err != nil {
			cfg, envErr := configFromEnv(prefix, src.getenv, src.readFile)
			if envErr != nil {
				return nil, fmt.Errorf("read %s with kubectl: %w; from the environment: %w", where, err, envErr)
			}
			return cfg, nil
		}
	}

	data, err := parseConfigMap(doc)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", where, err)
	}
	cfg, err := configFromLookup(prefix, func(k string) (string, bool) {
		if v, ok := data[k]; ok && v != "" {
			return v, true
		}
		return nonEmpty(src.getenv, k)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return cfg, nil
}

// fetchInPod gathers the service account's CA and namespace and asks the
// API server.
func fetchInPod(ctx context.Context, src configMapSources, host string, token []byte, namespace, name string) ([]byte, error) {
	ca, err := src.readFile(saDir + "/ca.crt")
	if err != nil {
		return nil, fmt.Errorf("service account CA: %w", err)
	}
	if namespace == "" {
		ns, err := src.readFile(saDir + "/namespace")
		if err != nil {
			return nil, fmt.Errorf("pod namespace: %w", err)
		}
		namespace = strings.TrimSpace(string(ns))
	}
	port, ok := nonEmpty(src.getenv, "KUBERNETES_SERVICE_PORT")
	if !ok {
		port = "443"
	}
	return src.inPod(ctx, host, port, token, ca, namespace, name)
}

// parseConfigMap extracts the data of a ConfigMap JSON document, as the
// API and `kubectl -o json` return it.
func parseConfigMap(doc []byte) (map[string]string, error) {
	var cm struct {
		Kind string            `json:"kind"`
		Data map[string]string `json:"data"`
	}
	if err := json.Unmarshal(doc, &cm); err != nil {
		return nil, fmt.Errorf("%w: decode configmap: %w", ErrConfig, err)
	}
	if cm.Kind != "" && cm.Kind != "ConfigMap" {
		return nil, fmt.Errorf("%w: got a %s, want a ConfigMap", ErrConfig, cm.Kind)
	}
	return cm.Data, nil
}

// fetchConfigMapInPod GETs the ConfigMap from the API server with the
// service account's token, trusting only the cluster CA.
func fetchConfigMapInPod(ctx context.Context, host, port string, token, ca []byte, namespace, name string) ([]byte, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("service account CA holds no certificate")
	}
	u := url.URL{
		Scheme: "https",
		Host:   net.JoinHostPort(host, port),
		Path:   "/api/v1/namespaces/" + namespace + "/configmaps/" + name,
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+string(token))
	req.Header.Set("Accept", "application/json")
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		Proxy:           http.ProxyFromEnvironment,
	}}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxConfigMapBytes))
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return body, nil
	case http.StatusNotFound:
		return nil, fmt.Errorf("%w: configmap %s/%s does not exist", ErrConfig, namespace, name)
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, fmt.Errorf("%w: service account may not read configmap %s/%s (HTTP %d)", ErrConfig, namespace, name, resp.StatusCode)
	}
	return nil, fmt.Errorf("kubernetes API: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(body[:min(len(body), 512)]))
}

// fetchConfigMapKubectl runs kubectl with the user's kubeconfig.
func fetchConfigMapKubectl(ctx context.Context, namespace, name string) ([]byte, error) {
	args := []string{"get", "configmap", name, "-o", "json"}
	if namespace != "" {
		args = append(args, "-n", namespace)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "kubectl", args...) //nolint:gosec // fixed program; name and namespace are validated Kubernetes names
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, msg)
		}
		return nil, fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
	}
	if stdout.Len() > maxConfigMapBytes {
		return nil, fmt.Errorf("kubectl %s: output larger than %d bytes", strings.Join(args, " "), maxConfigMapBytes)
	}
	return stdout.Bytes(), nil
}
