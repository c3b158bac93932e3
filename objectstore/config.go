package objectstore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const (
	// DefaultEnvPrefix is the variable prefix ConfigFromEnv uses for "".
	DefaultEnvPrefix = "EPOCH_S3"
	// defaultEnvFile is read relative to $HOME when <prefix>_ENV_FILE is
	// unset.
	defaultEnvFile = ".config/epoch/s3.env"
)

// Config locates a store. An Endpoint of "file:///abs/dir" or a bare
// absolute path selects the local folder backend with dir as the store
// root (bucket, credentials and prefix are unused); anything else is an S3
// endpoint, "host[:port]" optionally preceded by "http://" or "https://".
type Config struct {
	Endpoint  string
	AccessKey string
	SecretKey string
	Bucket    string
	Region    string // optional
	// Prefix is prepended to every key; "" means DefaultPrefix, "/" the
	// bucket root. A trailing slash is added when missing.
	Prefix string
	// Secure selects HTTPS for an endpoint without a scheme; a scheme in
	// Endpoint takes precedence.
	Secure bool
}

// IsLocal reports whether the config selects the local folder backend.
func (c *Config) IsLocal() bool {
	return strings.HasPrefix(c.Endpoint, "file://") || filepath.IsAbs(c.Endpoint)
}

// LocalDir is the store root of a local config.
func (c *Config) LocalDir() string {
	return strings.TrimPrefix(c.Endpoint, "file://")
}

// EffectivePrefix is the key prefix after defaults: "epoch/" for "", ""
// for "/", otherwise Prefix without leading and with one trailing slash.
func (c *Config) EffectivePrefix() string {
	switch p := strings.Trim(c.Prefix, "/"); {
	case c.Prefix == "":
		return DefaultPrefix
	case p == "":
		return ""
	default:
		return p + "/"
	}
}

// String describes the config without secrets.
func (c *Config) String() string {
	if c.IsLocal() {
		return "file://" + c.LocalDir()
	}
	return fmt.Sprintf("s3://%s/%s at %s", c.Bucket, c.EffectivePrefix(), c.Endpoint)
}

// s3Endpoint splits Endpoint into the host[:port] minio wants and whether
// to use TLS.
func (c *Config) s3Endpoint() (string, bool, error) {
	ep, secure := c.Endpoint, c.Secure
	switch {
	case strings.HasPrefix(ep, "https://"):
		ep, secure = strings.TrimPrefix(ep, "https://"), true
	case strings.HasPrefix(ep, "http://"):
		ep, secure = strings.TrimPrefix(ep, "http://"), false
	}
	ep = strings.TrimSuffix(ep, "/")
	if ep == "" || strings.Contains(ep, "/") {
		return "", false, fmt.Errorf("%w: endpoint %q: want host[:port] with an optional http:// or https://", ErrConfig, c.Endpoint)
	}
	return ep, secure, nil
}

// validate checks a config built in code; configs from the environment
// are checked with the variable names instead.
func (c *Config) validate() error {
	if c == nil {
		return fmt.Errorf("%w: nil config", ErrConfig)
	}
	if c.IsLocal() {
		if !filepath.IsAbs(c.LocalDir()) {
			return fmt.Errorf("%w: local endpoint %q: want file:///absolute/dir", ErrConfig, c.Endpoint)
		}
		return nil
	}
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"Endpoint", c.Endpoint}, {"AccessKey", c.AccessKey}, {"SecretKey", c.SecretKey}, {"Bucket", c.Bucket},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s not set", ErrConfig, strings.Join(missing, ", "))
	}
	if p := c.EffectivePrefix(); p != "" {
		if err := ValidateKey(strings.TrimSuffix(p, "/")); err != nil {
			return fmt.Errorf("%w: prefix: %w", ErrConfig, err)
		}
	}
	_, _, err := c.s3Endpoint()
	return err
}

// NewBackend returns the bare backend cfg selects, without retries or
// counters; most callers want New.
func NewBackend(cfg *Config) (Backend, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.IsLocal() {
		return NewLocalBackend(cfg.LocalDir())
	}
	return newS3Backend(cfg)
}

// ConfigFromEnv reads <prefix>_ENDPOINT, _ACCESS_KEY, _SECRET_KEY, _BUCKET,
// _REGION, _SECURE and _PREFIX (prefix "" means DefaultEnvPrefix). The env
// file <prefix>_ENV_FILE, or ~/.config/epoch/s3.env when that is unset and
// the file exists, fills only the variables the environment lacks (an
// empty variable counts as unset). _SECURE defaults to the endpoint's
// scheme, and to true for an endpoint without one. Missing settings give an
// error wrapping ErrConfig that names the variables.
func ConfigFromEnv(prefix string) (*Config, error) {
	return configFromEnv(prefix, os.LookupEnv, os.ReadFile)
}

// configFromEnv is ConfigFromEnv with the environment and file system
// injected, so tests do not touch process state.
func configFromEnv(prefix string, getenv func(string) (string, bool), readFile func(string) ([]byte, error)) (*Config, error) {
	if prefix == "" {
		prefix = DefaultEnvPrefix
	}
	file, explicit := nonEmpty(getenv, prefix+"_ENV_FILE")
	if !explicit {
		if home, ok := nonEmpty(getenv, "HOME"); ok {
			file = filepath.Join(home, defaultEnvFile)
		}
	}
	var fileVars map[string]string
	if file != "" {
		data, err := readFile(file)
		switch {
		case err == nil:
			if fileVars, err = parseEnvFile(data); err != nil {
				return nil, fmt.Errorf("%w: env file %s: %w", ErrConfig, file, err)
			}
		case !explicit && errors.Is(err, fs.ErrNotExist):
			// The default file is optional.
		default:
			return nil, fmt.Errorf("%w: env file %s (%s_ENV_FILE): %w", ErrConfig, file, prefix, err)
		}
	}
	return configFromLookup(prefix, func(name string) (string, bool) {
		if v, ok := nonEmpty(getenv, name); ok {
			return v, true
		}
		v, ok := fileVars[name]
		return v, ok && v != ""
	})
}

func nonEmpty(getenv func(string) (string, bool), name string) (string, bool) {
	v, ok := getenv(name)
	return v, ok && v != ""
}

// configFromLookup builds a Config from <prefix>_* variables and checks
// that the required ones are present.
func configFromLookup(prefix string, get func(string) (string, bool)) (*Config, error) {
	name := func(s string) string { return prefix + "_" + s }
	val := func(s string) string { v, _ := get(name(s)); return v }
	cfg := &Config{
		Endpoint:  val("ENDPOINT"),
		AccessKey: val("ACCESS_KEY"),
		SecretKey: val("SECRET_KEY"),
		Bucket:    val("BUCKET"),
		Region:    val("REGION"),
		Prefix:    val("PREFIX"),
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	required := []string{"ENDPOINT"}
	if !cfg.IsLocal() {
		required = append(required, "ACCESS_KEY", "SECRET_KEY", "BUCKET")
	}
	var missing []string
	for _, r := range required {
		if _, ok := get(name(r)); !ok {
			missing = append(missing, name(r))
		}
	}
	switch len(missing) {
	case 0:
	case 1:
		return nil, fmt.Errorf("%w: %s is not set", ErrConfig, missing[0])
	default:
		return nil, fmt.Errorf("%w: %s are not set", ErrConfig, strings.Join(missing, ", "))
	}
	if cfg.IsLocal() {
		if err := cfg.validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", name("ENDPOINT"), err)
		}
		return cfg, nil
	}

	var schemeSecure, hasScheme bool
	switch {
	case strings.HasPrefix(cfg.Endpoint, "https://"):
		schemeSecure, hasScheme = true, true
	case strings.HasPrefix(cfg.Endpoint, "http://"):
		hasScheme = true
	}
	cfg.Secure = !hasScheme || schemeSecure
	if s, ok := get(name("SECURE")); ok {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %s=%q is not a boolean", ErrConfig, name("SECURE"), s)
		}
		if hasScheme && b != schemeSecure {
			return nil, fmt.Errorf("%w: %s=%s contradicts the scheme of %s=%s",
				ErrConfig, name("SECURE"), s, name("ENDPOINT"), cfg.Endpoint)
		}
		cfg.Secure = b
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", prefix, err)
	}
	return cfg, nil
}

// parseEnvFile reads KEY=VALUE lines: blank lines and '#' comments are
// skipped, "export " is allowed, one pair of matching quotes around the
// value is removed, and an unquoted value ends at " #".
func parseEnvFile(data []byte) (map[string]string, error) {
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimSpace(strings.TrimPrefix(line, "export "))
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("line %d: want KEY=VALUE", n)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		} else if i := strings.Index(v, " #"); i >= 0 {
			v = strings.TrimSpace(v[:i])
		}
		vars[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return vars, nil
}
