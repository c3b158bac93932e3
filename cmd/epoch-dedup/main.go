// Command epoch-dedup pushes Cocoon VM snapshots (or any folder of files) to
// a chunk-deduplicating registry in a local folder or an S3 bucket, pulls
// them back, and inspects and checks the store. Run "epoch-dedup demo" to
// see what it saves.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
