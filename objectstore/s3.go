package objectstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// maxSinglePut is the largest object S3 accepts in one PUT. Conditional
// writes are always sent as one PUT (see s3Backend.Put), so they are
// limited to it.
const maxSinglePut = 5 << 30

// s3Backend stores objects in an S3 bucket through minio-go.
type s3Backend struct {
	c        *minio.Client
	bucket   string
	endpoint string
	secure   bool
}

var _ Backend = (*s3Backend)(nil)

// newS3Backend builds the client; it makes no request, so a wrong bucket
// or credentials show up on first use, with errors that say so.
func newS3Backend(cfg *Config) (*s3Backend, error) {
	endpoint, secure, err := cfg.s3Endpoint()
	if err != nil {
		return nil, err
	}
	c, err := minio.New(endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: secure,
		Region: cfg.Region,
		// The retry decorator is the one retry layer: it honours ctx,
		// knows which errors are permanent and counts attempts.
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: s3 endpoint %q: %w", ErrConfig, endpoint, err)
	}
	return &s3Backend{c: c, bucket: cfg.Bucket, endpoint: endpoint, secure: secure}, nil
}

func (s *s3Backend) String() string { return s.describe("") }

func (s *s3Backend) describe(prefix string) string {
	scheme := "http"
	if s.secure {
		scheme = "https"
	}
	return fmt.Sprintf("s3://%s/%s at %s://%s", s.bucket, prefix, scheme, s.endpoint)
}

// err maps minio errors to the package's sentinels and marks what a retry
// cannot fix as permanent.
func (s *s3Backend) err(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var resp minio.ErrorResponse
	if !errors.As(err, &resp) {
		// Connection trouble (reset, timeout, unexpected EOF): transient.
		return err
	}
	switch {
	case resp.Code == "NoSuchBucket":
		return Permanent(fmt.Errorf("bucket %q does not exist at %s: %w", s.bucket, s.endpoint, err))
	case resp.Code == "NoSuchKey" || resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case resp.Code == "PreconditionFailed" || resp.StatusCode == http.StatusPreconditionFailed,
		resp.Code == "ConditionalRequestConflict":
		return fmt.Errorf("%w: %w", ErrPreconditionFailed, err)
	case resp.Code == "InvalidRange" || resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		return fmt.Errorf("%w: %w", ErrInvalidRange, err)
	case resp.Code == "AccessDenied", resp.Code == "InvalidAccessKeyId", resp.Code == "SignatureDoesNotMatch",
		resp.StatusCode == http.StatusForbidden:
		return Permanent(fmt.Errorf("access denied to bucket %q at %s (check the access key and secret key): %w",
			s.bucket, s.endpoint, err))
	case resp.Code == "SlowDown", resp.Code == "OperationAborted", resp.Code == "RequestTimeout",
		resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout,
		resp.StatusCode >= 500:
		return err
	case resp.StatusCode >= 400:
		return Permanent(err)
	}
	return err
}

// Put uploads body. Unconditional writes go through minio's PutObject,
// which switches to a parallel multipart upload above 16 MiB. Conditional
// writes are sent as a single PUT: minio's high-level multipart upload
// drops If-None-Match/If-Match on CompleteMultipartUpload (some servers
// then silently overwrite). The objects this project writes conditionally
// (config, catalog, manifests, recipes, packs) are far below the 5 GiB
// single-PUT limit.
func (s *s3Backend) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, opts PutOptions) (ObjectInfo, error) {
	po := minio.PutObjectOptions{ContentType: "application/octet-stream"}
	switch {
	case opts.IfNoneMatch:
		po.SetMatchETagExcept("*")
		po.DisableMultipart = true
	case opts.IfMatch != "":
		po.SetMatchETag(strings.Trim(opts.IfMatch, `"`))
		po.DisableMultipart = true
	}
	if po.DisableMultipart && size > maxSinglePut {
		return ObjectInfo{}, Permanent(fmt.Errorf("conditional write of %d bytes exceeds the %d-byte single PUT limit", size, int64(maxSinglePut)))
	}
	if sp, ok := body.(*Spool); ok {
		body = sp.File // minio-go knows an *os.File
	}
	up, err := s.c.PutObject(ctx, s.bucket, key, body, size, po)
	if err != nil {
		err = s.err(err)
		if cerr := s.conditionLost(ctx, key, opts, err); cerr != nil {
			return ObjectInfo{}, cerr
		}
		if opts.IfMatch != "" && errors.Is(err, ErrNotFound) {
			// S3 answers If-Match on a missing key with 404; for the
			// caller it is the same lost race.
			return ObjectInfo{}, fmt.Errorf("%w: %w", ErrPreconditionFailed, err)
		}
		return ObjectInfo{}, err
	}
	return ObjectInfo{Key: key, Size: size, ETag: up.ETag, ModTime: up.LastModified}, nil
}

// conditionLost tells a lost race apart from connection trouble after a
// conditional write failed without an S3 error: a server may answer 412
// before it has read a large body and close the connection, which the
// client sees as a reset while still sending. If the condition can be seen
// to fail now (the key exists for a create-only write, or has another ETag
// for If-Match), the write lost its race; otherwise nil, and the error stays
// transient for the retry layer.
func (s *s3Backend) conditionLost(ctx context.Context, key string, opts PutOptions, err error) error {
	var resp minio.ErrorResponse
	if errors.As(err, &resp) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	if !opts.IfNoneMatch && opts.IfMatch == "" {
		return nil
	}
	oi, serr := s.c.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	switch {
	case serr == nil && opts.IfNoneMatch:
		return fmt.Errorf("%w: %s exists (connection closed early: %w)", ErrPreconditionFailed, key, err)
	case serr == nil && strings.Trim(oi.ETag, `"`) != strings.Trim(opts.IfMatch, `"`):
		return fmt.Errorf("%w: %s changed (connection closed early: %w)", ErrPreconditionFailed, key, err)
	}
	return nil
}

// Get issues the GET at once (minio's GetObject would defer it to the
// first Read), so a missing key fails here.
func (s *s3Backend) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if length == 0 {
		info, err := s.Stat(ctx, key)
		if err != nil {
			return nil, err
		}
		if offset > info.Size {
			return nil, fmt.Errorf("%w: offset %d, object has %d bytes", ErrInvalidRange, offset, info.Size)
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	var o minio.GetObjectOptions
	whole := offset == 0 && length < 0
	switch {
	case whole:
	case length < 0:
		if err := o.SetRange(offset, 0); err != nil {
			return nil, Permanent(err)
		}
	default:
		if err := o.SetRange(offset, offset+length-1); err != nil {
			return nil, Permanent(err)
		}
	}
	rc, oi, _, err := minio.Core{Client: s.c}.GetObject(ctx, s.bucket, key, o)
	if err != nil {
		err = s.err(err)
		if errors.Is(err, ErrInvalidRange) && length < 0 {
			// "bytes=N-" with N == size is refused by S3 but is an
			// empty read by this package's contract.
			if info, serr := s.Stat(ctx, key); serr == nil && info.Size == offset {
				return io.NopCloser(bytes.NewReader(nil)), nil
			}
		}
		return nil, err
	}
	if length >= 0 && oi.Size != length {
		// S3 shortens a range that runs past the end.
		_ = rc.Close()
		return nil, fmt.Errorf("%w: offset %d length %d, got %d bytes", ErrInvalidRange, offset, length, oi.Size)
	}
	if whole {
		return &infoReadCloser{ReadCloser: rc, info: s.info(key, oi)}, nil
	}
	return rc, nil
}

func (s *s3Backend) info(key string, oi minio.ObjectInfo) ObjectInfo {
	return ObjectInfo{Key: key, Size: oi.Size, ETag: oi.ETag, ModTime: oi.LastModified}
}

func (s *s3Backend) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	oi, err := s.c.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return ObjectInfo{}, s.err(err)
	}
	return s.info(key, oi), nil
}

func (s *s3Backend) Delete(ctx context.Context, key string) error {
	err := s.err(s.c.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}))
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

func (s *s3Backend) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops minio's listing when fn ends it early
	for oi := range s.c.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if oi.Err != nil {
			return s.err(oi.Err)
		}
		if strings.HasSuffix(oi.Key, "/") {
			continue // a folder marker, not an object
		}
		if err := fn(s.info(oi.Key, oi)); err != nil {
			return err
		}
	}
	return nil
}
