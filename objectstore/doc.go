// Package objectstore is the object-store seam of epoch-dedup: a Config,
// two backends behind the one Backend interface (an S3 bucket and a local
// folder), and the decorators every Client puts around them (request
// counters, retries).
//
// # Basics
//
// New opens the store a Config names; ConfigFromEnv and
// ConfigFromConfigMap build that Config the way Epoch v0.1.x did. A Client
// prepends its prefix (default "epoch/" on S3) to every key, validates keys
// (ValidateKey: no empty, "." or ".." segments, no leading slash, backslash
// or NUL) and wraps errors as "verb key: cause" around the sentinels
// ErrNotFound, ErrPreconditionFailed, ErrInvalidKey, ErrInvalidRange and
// ErrConfig, which callers test with errors.Is.
//
// # Configuration
//
// ConfigFromEnv("EPOCH_S3") reads
//
//	EPOCH_S3_ENDPOINT    host[:port], http(s)://host[:port], file:///abs/dir or /abs/dir
//	EPOCH_S3_ACCESS_KEY  required for S3
//	EPOCH_S3_SECRET_KEY  required for S3
//	EPOCH_S3_BUCKET      required for S3
//	EPOCH_S3_REGION      optional
//	EPOCH_S3_SECURE      true/false; default: the endpoint's scheme, true without one
//	EPOCH_S3_PREFIX      key prefix; default "epoch/", "/" for the bucket root
//	EPOCH_S3_ENV_FILE    KEY=VALUE file; default ~/.config/epoch/s3.env
//
// The env file fills only what the environment lacks. ConfigFromConfigMap
// reads the same keys from a Kubernetes ConfigMap's data (through the API
// inside a pod, kubectl outside, the environment as a last resort). A
// missing setting is reported by its variable name.
//
// # Conditional writes
//
// PutOptions.IfNoneMatch makes a write create-only; PutOptions.IfMatch
// replaces an object only while its ETag is unchanged. Either fails with
// ErrPreconditionFailed when the condition does not hold, atomically with
// respect to every other writer, in other processes and on other hosts
// too. This is what makes the catalog a compare-and-swap instead of a
// lost-update race:
//
//	for {
//		data, info, err := c.GetBytes(ctx, "catalog.json", limit)
//		// ... modify data ...
//		_, err = c.PutBytes(ctx, "catalog.json", data, PutOptions{IfMatch: info.ETag})
//		if !errors.Is(err, ErrPreconditionFailed) {
//			break // done, or a real error
//		}
//	}
//
// On S3, If-None-Match: * and If-Match: <etag> are sent with a single PUT;
// minio-go's multipart upload drops them on CompleteMultipartUpload, so
// conditional writes never use multipart and are limited to 5 GiB.
// Unconditional writes above 16 MiB use parallel multipart uploads. In the
// local folder, create-only is link(2) of a fully written temp file and
// If-Match holds an flock on a per-key lock file (".lock-<name>") while it
// compares and renames.
//
// # Handing over a file
//
// A Put body that is a *Spool (NewSpool: an anonymous file, O_TMPFILE on
// Linux) is the caller's to give away: the folder store links that very
// file into place when it is on the same filesystem, instead of copying
// its bytes into a temp file of its own; S3 reads it like any file. A push
// spools each pack in the cache dir, so into a folder store on the same
// filesystem the pack is written to the page cache once, not twice
// (1 GiB push, 2-core VM, three pairs: 1.02-1.17 s of system CPU instead
// of 1.20-1.37 s). Client.TakesSpools tells the caller that this will
// happen; then nothing reads the spool's bytes back and Spool.Writer
// writes them around the page cache (O_DIRECT, two 1 MiB buffers, one
// written in the background): the copy into fresh page cache pages was the
// larger part of a first push's system time on the benchmark VM, whose
// free memory the host takes back (a first touch costs ~15 us a page).
// 1 GiB first push after 3 GiB of new input, three alternating runs:
// 2.19-2.31 s instead of 2.91-3.14 s, system CPU 0.8-1.0 s instead of 2.2-2.6.
//
// # Retries
//
// Every Client retries transient failures (5xx, throttling, timeouts,
// broken connections) up to 5 attempts with exponential backoff and
// jitter, honouring ctx; see WithMaxAttempts and WithBackoff. It does not
// retry errors IsPermanent reports: the sentinels above, access denied, a
// missing bucket, other 4xx answers, local file system errors, and errors
// a backend marks with Permanent. minio-go's own retries are switched off
// so that there is one retry layer. Put rewinds its body before each
// attempt; Get retries opening, not reading; List resumes after the last
// key it delivered.
//
// # Caveats
//
//   - A create-only Put whose response is lost is retried and then reports
//     ErrPreconditionFailed although it succeeded. Callers writing
//     content-addressed keys (same key, same bytes) treat
//     ErrPreconditionFailed from a create-only write as success; callers
//     racing for a key with different bytes read it back to see who won.
//   - Likewise an If-Match write whose response is lost reports
//     ErrPreconditionFailed after it took effect; the read-modify-write loop
//     then applies its change again to the new version, so the change must
//     be idempotent (set a tag, not increment a counter).
//   - ETags are opaque and backend-specific: S3's (MD5 or multipart), the
//     local folder's "<inode>-<size>-<mtime ns>" in hex. Compare them only
//     with ETags from the same store.
//   - The local folder cannot hold both "a" and "a/b" (a file cannot be a
//     directory); S3 can. Key names whose segments start with ".tmp-" or
//     ".lock-" are reserved there. Empty directories left by Delete stay.
//   - Stats counts backend calls and object bytes, not HTTP requests.
package objectstore
