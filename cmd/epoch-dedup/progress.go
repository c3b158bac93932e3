package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/cocoonstack/epoch-dedup/cocoon"
	"github.com/cocoonstack/epoch-dedup/registry"
)

const describeEvery = 200 * time.Millisecond

// transferBar shows a push or pull on the terminal: bytes scanned (push)
// or fetched (pull) against the total, new bytes, bytes sent or reused,
// rate and ETA. A nil *transferBar does nothing.
type transferBar struct {
	mu       sync.Mutex
	pb       *progressbar.ProgressBar
	pull     bool
	total    int64
	files    int64
	dataBase int64 // DataBytes when the last file finished
	lastDesc time.Time
}

// showProgress reports whether progress goes to the terminal: stderr is
// one, and neither -q nor --json was given.
func (a *app) showProgress() bool {
	if a.quiet || a.json {
		return false
	}
	f, ok := a.stderr.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// newTransferBar returns a bar for total bytes, or nil when progress is not
// shown. total <= 0 means unknown.
func (a *app) newTransferBar(what string, total int64, pull bool) *transferBar {
	if !a.showProgress() {
		return nil
	}
	max := total
	if max <= 0 {
		max = -1
	}
	pb := progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(a.stderr),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionSetWidth(24),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionFullWidth(),
		progressbar.OptionSetRenderBlankState(true),
	)
	return &transferBar{pb: pb, pull: pull, total: total}
}

// progress returns the callback to hand to the registry, or nil.
func (b *transferBar) progress() registry.Progress {
	if b == nil {
		return nil
	}
	return b.update
}

func (b *transferBar) update(s registry.TransferStats) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var value int64
	var desc string
	if b.pull {
		// The pull engine reports bytes read from packs (compressed) and
		// bytes reused from local files, not raw bytes written, so the bar
		// shows those two.
		value = s.DownloadedBytes + s.ReusedBytes
		desc = fmt.Sprintf("pull: %s downloaded, %s reused", cocoon.HumanSize(s.DownloadedBytes), cocoon.HumanSize(s.ReusedBytes))
	} else {
		// RawBytes grows when a file is done; DataBytes as chunks are cut.
		if s.Files != b.files {
			b.files, b.dataBase = s.Files, s.DataBytes
		}
		value = s.RawBytes + (s.DataBytes - b.dataBase)
		desc = fmt.Sprintf("push: %s new, %s sent", cocoon.HumanSize(s.NewBytes), cocoon.HumanSize(s.UploadedBytes))
	}
	if b.total > 0 && value > b.total {
		b.total = value
		b.pb.ChangeMax64(value)
	}
	if now := time.Now(); now.Sub(b.lastDesc) >= describeEvery {
		b.lastDesc = now
		b.pb.Describe(desc)
	}
	_ = b.pb.Set64(value)
}

// finish removes the bar.
func (b *transferBar) finish() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	_ = b.pb.Finish() // OptionClearOnFinish: the bar leaves no line behind
}

// transferSummary is the JSON summary of a push or pull.
type transferSummary struct {
	Op              string  `json:"op"`
	Name            string  `json:"name"`
	Tag             string  `json:"tag"`
	Digest          string  `json:"digest"`
	Files           int64   `json:"files"`
	RawBytes        int64   `json:"raw_bytes"`
	DataBytes       int64   `json:"data_bytes"`
	Chunks          int64   `json:"chunks"`
	NewChunks       int64   `json:"new_chunks"`
	NewBytes        int64   `json:"new_bytes"`
	ReusedBytes     int64   `json:"reused_bytes"`
	ClonedBytes     int64   `json:"cloned_bytes,omitempty"`
	UploadedBytes   int64   `json:"uploaded_bytes"`
	DownloadedBytes int64   `json:"downloaded_bytes"`
	Packs           int64   `json:"packs"`
	Requests        int64   `json:"requests"`
	Seconds         float64 `json:"seconds"`
	// Ratio is raw bytes per byte transferred.
	Ratio float64 `json:"ratio"`
}

func newSummary(op, name, tag, digest string, s registry.TransferStats) transferSummary {
	out := transferSummary{
		Op: op, Name: name, Tag: tag, Digest: digest,
		Files: s.Files, RawBytes: s.RawBytes, DataBytes: s.DataBytes, Chunks: s.Chunks,
		NewChunks: s.NewChunks, NewBytes: s.NewBytes, ReusedBytes: s.ReusedBytes, ClonedBytes: s.ClonedBytes,
		UploadedBytes: s.UploadedBytes, DownloadedBytes: s.DownloadedBytes,
		Packs: s.Packs, Requests: s.Requests, Seconds: s.Seconds,
	}
	out.Ratio = ratio(s.RawBytes, out.moved())
	return out
}

func (t transferSummary) moved() int64 {
	if t.Op == "push" {
		return t.UploadedBytes
	}
	return t.DownloadedBytes
}

// print writes the summary: one JSON object with --json, else one line.
func (a *app) printSummary(t transferSummary) error {
	if a.json {
		return a.printJSON(t)
	}
	if t.Op == "pull" {
		a.printf("pulled %s:%s (sha256:%s): %s raw, %s/%s chunks downloaded, %s downloaded, %s reused, ratio %s, %s\n",
			t.Name, t.Tag, short(t.Digest), cocoon.HumanSize(t.RawBytes), count(t.NewChunks), count(t.Chunks),
			cocoon.HumanSize(t.DownloadedBytes), cocoon.HumanSize(t.ReusedBytes), ratioString(t.Ratio), seconds(t.Seconds))
		return nil
	}
	a.printf("pushed %s:%s (sha256:%s): %s raw, %s/%s chunks new (%s), %s uploaded, %s reused, ratio %s, %s\n",
		t.Name, t.Tag, short(t.Digest), cocoon.HumanSize(t.RawBytes), count(t.NewChunks), count(t.Chunks),
		cocoon.HumanSize(t.NewBytes), cocoon.HumanSize(t.UploadedBytes), cocoon.HumanSize(t.ReusedBytes),
		ratioString(t.Ratio), seconds(t.Seconds))
	return nil
}

// ratio is a / b, or 0 when b is 0.
func ratio(a, b int64) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func ratioString(r float64) string {
	if r == 0 {
		return "-"
	}
	if r >= 100 {
		return strconv.FormatFloat(r, 'f', 0, 64) + "x"
	}
	return strconv.FormatFloat(r, 'f', 1, 64) + "x"
}

func seconds(s float64) string {
	return strconv.FormatFloat(s, 'f', 1, 64) + "s"
}

// short abbreviates a hex digest.
func short(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

// count formats n with thousands separators.
func count(n int64) string {
	if n < 0 {
		return "-" + count(-n)
	}
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
