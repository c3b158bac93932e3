package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cocoonstack/epoch-dedup/cocoon"
	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/objectstore"
	"github.com/cocoonstack/epoch-dedup/registry"
)

// Exit codes.
const (
	exitOK       = 0
	exitError    = 1
	exitUsage    = 2
	exitProblems = 3
	exitSignal   = 130
)

// Environment variables read by the CLI (objectstore reads EPOCH_S3_*).
const (
	envStore    = "EPOCH_STORE"
	envCacheDir = "EPOCH_CACHE_DIR"
	envS3Prefix = "EPOCH_S3"
	envS3Bucket = "EPOCH_S3_BUCKET"
	envS3Prefx  = "EPOCH_S3_PREFIX"
	envS3Endp   = "EPOCH_S3_ENDPOINT"
	envS3File   = "EPOCH_S3_ENV_FILE"
)

// envHelp is appended to the root command's help.
const envHelp = `
Store selection (--store, else $EPOCH_STORE):
  /path/to/dir or file:///path   a store in a local folder (created if missing)
  s3://BUCKET[/PREFIX]           an S3 bucket; endpoint and keys come from the
                                 EPOCH_S3_* variables below (PREFIX overrides
                                 EPOCH_S3_PREFIX, default "epoch/")
  unset                          S3 when EPOCH_S3_ENDPOINT (or EPOCH_S3_ENV_FILE)
                                 is set, else the folder $XDG_DATA_HOME/epoch-dedup
                                 (~/.local/share/epoch-dedup)

Environment:
  EPOCH_STORE          default for --store
  COCOON_ROOT_DIR      default for --root (/var/lib/cocoon)
  EPOCH_CACHE_DIR      default for --cache-dir (the node-local chunk index;
                       else $XDG_CACHE_HOME/epoch-dedup or ~/.cache/epoch-dedup)
  EPOCH_S3_ENDPOINT    S3 endpoint, host[:port] with optional http:// or https://
  EPOCH_S3_ACCESS_KEY  S3 access key
  EPOCH_S3_SECRET_KEY  S3 secret key
  EPOCH_S3_BUCKET      S3 bucket
  EPOCH_S3_PREFIX      key prefix inside the bucket (default "epoch/")
  EPOCH_S3_REGION      S3 region (optional)
  EPOCH_S3_SECURE      true/false: HTTPS for an endpoint without a scheme
  EPOCH_S3_ENV_FILE    file of KEY=VALUE lines filling the EPOCH_S3_* variables
                       the environment lacks (default ~/.config/epoch/s3.env)
  EPOCH_GC_GRACE       garbage collection grace period (default 1h); pushers and
                       gc must agree, so set it for both or for neither

Exit status: 0 success, 1 error, 2 usage error, 3 check found problems.`

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// problemsError is returned by check when the store has problems: exit 3.
type problemsError struct{ n int }

func (e *problemsError) Error() string {
	if e.n == 1 {
		return "check found 1 problem"
	}
	return fmt.Sprintf("check found %d problems", e.n)
}

// app holds the global options and the output streams.
type app struct {
	store    string
	root     string
	cacheDir string
	json     bool
	quiet    bool

	stdout io.Writer
	stderr io.Writer
	// getenv reads the environment; lookupEnv distinguishes unset.
	getenv func(string) string
}

// run executes the command line and returns the exit code. Errors are
// printed as one line on stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := NewRootCmd(stdout, stderr)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	_, _ = fmt.Fprintln(stderr, "epoch-dedup: "+oneLine(err.Error()))
	var ue *usageError
	var pe *problemsError
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &pe):
		return exitProblems
	case ctx.Err() != nil:
		return exitSignal
	}
	return exitError
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// NewRootCmd returns the epoch-dedup command with its subcommands.
func NewRootCmd(stdout, stderr io.Writer) *cobra.Command {
	a := &app{stdout: stdout, stderr: stderr, getenv: os.Getenv}
	root := &cobra.Command{
		Use:   "epoch-dedup",
		Short: "Chunk-deduplicating registry for Cocoon VM snapshots",
		Long: `epoch-dedup pushes Cocoon VM snapshots (or any folder of files) to a store
in a local folder or an S3 bucket and pulls them back, moving only the chunks
the other side lacks. Run it after every "cocoon vm save"; try "epoch-dedup
demo" to see what it saves.` + "\n" + envHelp,
		Example: `  epoch-dedup demo
  epoch-dedup push myvm                      # Cocoon snapshot myvm as myvm:latest
  epoch-dedup --store s3://snapshots/prod push myvm -t hibernate
  epoch-dedup pull myvm:hibernate --name myvm-copy
  epoch-dedup push --dir ./files data:v1 && epoch-dedup pull data:v1 --dir ./out
  epoch-dedup ls; epoch-dedup inspect myvm; epoch-dedup check --read-data`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				msg := fmt.Sprintf("unknown command %q", args[0])
				if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
					msg += " (did you mean " + strings.Join(s, " or ") + "?)"
				}
				return usagef("%s; run 'epoch-dedup --help'", msg)
			}
			return cmd.Help()
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usagef("%v (see '%s --help')", err, cmd.CommandPath())
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.store, "store", "", "store: folder, file:// URL or s3://BUCKET/PREFIX (env EPOCH_STORE; default: see below)")
	pf.StringVar(&a.root, "root", "", "Cocoon root dir (env COCOON_ROOT_DIR; default /var/lib/cocoon)")
	pf.StringVar(&a.cacheDir, "cache-dir", "", "folder of the node-local chunk index (env EPOCH_CACHE_DIR)")
	pf.BoolVar(&a.json, "json", false, "print machine-readable JSON on stdout")
	pf.BoolVarP(&a.quiet, "quiet", "q", false, "no progress output")

	root.AddCommand(
		newPushCmd(a),
		newPullCmd(a),
		newLsCmd(a),
		newInspectCmd(a),
		newTagCmd(a),
		newRmCmd(a),
		newCheckCmd(a),
		newStatsCmd(a),
		newGCCmd(a),
		newBenchCmd(a),
		newDemoCmd(a),
	)
	for _, c := range root.Commands() {
		c.SilenceUsage, c.SilenceErrors = true, true
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SuggestionsMinimumDistance = 2
	return root
}

// args wraps a cobra argument check so its failure is a usage error.
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := check(cmd, a); err != nil {
			return usagef("%s: %v (see '%s --help')", cmd.Name(), err, cmd.CommandPath())
		}
		return nil
	}
}

// parseRef parses NAME[:TAG]; a bad reference is a usage error.
func parseRef(ref string) (string, string, error) {
	name, tag, err := manifest.ParseReference(ref)
	if err != nil {
		return "", "", &usageError{err}
	}
	return name, tag, nil
}

// rootDir is --root, else $COCOON_ROOT_DIR, else /var/lib/cocoon.
func (a *app) rootDir() string {
	if a.root != "" {
		return a.root
	}
	return cocoon.RootDirFromEnv()
}

// storeConfig resolves --store / $EPOCH_STORE / $EPOCH_S3_* / the default
// folder into an object store config.
func (a *app) storeConfig() (*objectstore.Config, error) {
	spec := a.store
	if spec == "" {
		spec = a.getenv(envStore)
	}
	switch {
	case spec == "" && (a.getenv(envS3Endp) != "" || a.getenv(envS3File) != ""):
		cfg, err := objectstore.ConfigFromEnv(envS3Prefix)
		if err != nil {
			return nil, fmt.Errorf("store from environment: %w", err)
		}
		return cfg, nil
	case spec == "":
		dir, err := defaultStoreDir(a.getenv)
		if err != nil {
			return nil, err
		}
		return &objectstore.Config{Endpoint: "file://" + dir}, nil
	case strings.HasPrefix(spec, "s3://"):
		return s3Config(spec)
	case strings.HasPrefix(spec, "file://"):
		return localConfig(strings.TrimPrefix(spec, "file://"))
	case strings.Contains(spec, "://"):
		return nil, usagef("store %q: want a folder, file:///path or s3://BUCKET/PREFIX", spec)
	default:
		return localConfig(spec)
	}
}

func localConfig(dir string) (*objectstore.Config, error) {
	if dir == "" {
		return nil, usagef("store: empty folder path")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", dir, err)
	}
	return &objectstore.Config{Endpoint: "file://" + abs}, nil
}

// s3Config reads the EPOCH_S3_* settings with bucket and prefix taken from
// the URL.
func s3Config(spec string) (*objectstore.Config, error) {
	rest := strings.TrimPrefix(spec, "s3://")
	bucket, prefix, _ := strings.Cut(rest, "/")
	if bucket == "" {
		return nil, usagef("store %q: no bucket (want s3://BUCKET[/PREFIX])", spec)
	}
	// The bucket comes from the URL: make it count as set, so only the
	// settings really missing are reported.
	if err := os.Setenv(envS3Bucket, bucket); err != nil {
		return nil, err
	}
	if prefix != "" {
		if err := os.Setenv(envS3Prefx, prefix); err != nil {
			return nil, err
		}
	}
	cfg, err := objectstore.ConfigFromEnv(envS3Prefix)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", spec, err)
	}
	cfg.Bucket = bucket
	if prefix != "" {
		cfg.Prefix = prefix
	}
	return cfg, nil
}

// defaultStoreDir is $XDG_DATA_HOME/epoch-dedup, else
// ~/.local/share/epoch-dedup.
func defaultStoreDir(getenv func(string) string) (string, error) {
	if d := getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "epoch-dedup"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the default store folder (set --store or EPOCH_STORE): %w", err)
	}
	return filepath.Join(home, ".local", "share", "epoch-dedup"), nil
}

// registryOptions are the options every command opens the registry with.
func (a *app) registryOptions() []registry.Option {
	var opts []registry.Option
	dir := a.cacheDir
	if dir == "" {
		dir = a.getenv(envCacheDir)
	}
	if dir != "" {
		opts = append(opts, registry.WithCacheDir(dir))
	}
	// Pushers must assume a grace no longer than gc uses: both read it here.
	if v := a.getenv(envGCGrace); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			opts = append(opts, registry.WithGCGrace(d))
		}
	}
	return opts
}

// openRegistry opens the store the global options select.
func (a *app) openRegistry(extra ...registry.Option) (*registry.Registry, error) {
	cfg, err := a.storeConfig()
	if err != nil {
		return nil, err
	}
	client, err := objectstore.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", cfg, err)
	}
	return registry.New(client, append(a.registryOptions(), extra...)...), nil
}

// withRegistry opens the registry, runs fn and closes the registry.
func (a *app) withRegistry(fn func(*registry.Registry) error) (err error) {
	reg, err := a.openRegistry()
	if err != nil {
		return err
	}
	defer func() {
		if cerr := reg.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close index: %w", cerr)
		}
	}()
	return fn(reg)
}

// printJSON writes v as indented JSON on stdout.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printf writes human output on stdout.
func (a *app) printf(format string, args ...any) {
	_, _ = fmt.Fprintf(a.stdout, format, args...)
}

// fprintf writes to w, ignoring errors (for table writers whose Flush
// reports them).
func (a *app) fprintf(w io.Writer, format string, args ...any) {
	_, _ = fmt.Fprintf(w, format, args...)
}
