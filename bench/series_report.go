package bench

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Claim limits checked on every series with a known lower bound, for every
// revision after the first.
const (
	// MaxUploadOverLowerBound: epoch-dedup's upload, metadata included.
	MaxUploadOverLowerBound = 1.5
	// MaxPullOverLowerBound: download of a node holding the previous revision.
	MaxPullOverLowerBound = 1.5
	// MaxUploadOverBaseline: "far below" the whole-file and zstd-parts
	// baselines means at most this share of each.
	MaxUploadOverBaseline = 0.5
)

// Report is the result of Run.
type Report struct {
	Machine   string          `json:"machine"`
	Config    SeriesConfig    `json:"config"`
	PartSize  int64           `json:"part_size"`
	Stores    []string        `json:"stores"`
	Restic    string          `json:"restic,omitempty"` // version; empty when not run
	RSSMethod string          `json:"rss_method"`
	Started   time.Time       `json:"started"`
	Seconds   float64         `json:"seconds"`
	Series    []*SeriesResult `json:"series"`
}

// SeriesResult holds every revision of one series.
type SeriesResult struct {
	Name        string           `json:"name"`
	Description string           `json:"description"`
	Revisions   []RevisionResult `json:"revisions"`
	// Cold is a node holding nothing pulling the last revision, per store.
	Cold []ColdPull `json:"cold"`
	// ResticRestore restores the last revision (restic 0.14 has no delta
	// restore, so it is a cold baseline).
	ResticRestore *Timed  `json:"restic_restore,omitempty"`
	Claims        []Claim `json:"claims"`
}

// RevisionResult is one revision: the store-independent baselines and, per
// store, what epoch-dedup moved.
type RevisionResult struct {
	N     int   `json:"n"`
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"` // apparent size of the revision's files
	// LowerBound is the zstd size (default level) of the content no store
	// has seen: never-seen 4 KiB pages for memory and overlay, inserted
	// bytes for the tar stream; -1 when unknown (Dirs).
	LowerBound int64 `json:"lower_bound"`
	// WholeFile is what Epoch v0.1.x uploads: every file whose sha256
	// differs from the previous revision's, in full.
	WholeFile int64 `json:"whole_file"`
	// ZstdParts is what fixed 512 MiB zstd parts upload: each part of a
	// changed file whose content changed, compressed.
	ZstdParts   int64           `json:"zstd_parts"`
	ReadSeconds float64         `json:"read_seconds"` // reading the files once
	Restic      *Timed          `json:"restic,omitempty"`
	Stores      []StoreRevision `json:"stores"`
}

// StoreRevision is epoch-dedup on one store for one revision.
type StoreRevision struct {
	Store string `json:"store"`
	// Push is PushDir; Bytes counts every byte PUT at the object-store
	// client (packs, recipes, index objects, descriptors, manifest,
	// catalog).
	Push         Timed `json:"push"`
	PushRequests int64 `json:"push_requests"`
	NewBytes     int64 `json:"new_bytes"` // raw bytes of the chunks the store lacked
	// Pull is PullDir onto the node that holds the previous revision;
	// Bytes counts every byte read from GET bodies.
	Pull         Timed `json:"pull"`
	PullRequests int64 `json:"pull_requests"`
	// PlainPut and PlainGet move the same files as one object each.
	PlainPut Timed `json:"plain_put"`
	PlainGet Timed `json:"plain_get"`
}

// ColdPull is the last revision pulled by a node that holds nothing.
type ColdPull struct {
	Store    string `json:"store"`
	Pull     Timed  `json:"pull"`
	PlainGet Timed  `json:"plain_get"`
}

// Claim is one checked statement about a series on one store.
type Claim struct {
	Store string  `json:"store"`
	What  string  `json:"what"`
	Worst float64 `json:"worst"` // worst ratio over the revisions after the first
	Rev   int     `json:"rev"`   // revision of the worst ratio
	Limit float64 `json:"limit"`
	OK    bool    `json:"ok"`
}

// Claim names.
const (
	ClaimUpload       = "upload / lower bound"
	ClaimPull         = "warm pull / lower bound"
	ClaimVsWholeFile  = "upload / whole-file"
	ClaimVsZstdParts  = "upload / zstd parts"
	claimWorstMissing = -1
)

// Failed lists the claims that do not hold, as lines for a report.
func (r *Report) Failed() []string {
	var out []string
	for _, s := range r.Series {
		for _, c := range s.Claims {
			if !c.OK {
				out = append(out, fmt.Sprintf("%s on %s: %s is %.2f at revision %d (limit %.2f)", s.Name, c.Store, c.What, c.Worst, c.Rev, c.Limit))
			}
		}
	}
	return out
}

// checkClaims evaluates the claims on every revision after the first of a
// series with a known lower bound.
func checkClaims(s *SeriesResult) []Claim {
	if len(s.Revisions) < 2 || len(s.Revisions[0].Stores) == 0 {
		return nil
	}
	var out []Claim
	for si, st := range s.Revisions[0].Stores {
		checks := []struct {
			what  string
			limit float64
			val   func(r RevisionResult, sr StoreRevision) float64
		}{
			{ClaimUpload, MaxUploadOverLowerBound, func(r RevisionResult, sr StoreRevision) float64 {
				return ratioOrMissing(sr.Push.Bytes, r.LowerBound)
			}},
			{ClaimPull, MaxPullOverLowerBound, func(r RevisionResult, sr StoreRevision) float64 {
				return ratioOrMissing(sr.Pull.Bytes, r.LowerBound)
			}},
			{ClaimVsWholeFile, MaxUploadOverBaseline, func(r RevisionResult, sr StoreRevision) float64 {
				return ratioOrMissing(sr.Push.Bytes, r.WholeFile)
			}},
			{ClaimVsZstdParts, MaxUploadOverBaseline, func(r RevisionResult, sr StoreRevision) float64 {
				return ratioOrMissing(sr.Push.Bytes, r.ZstdParts)
			}},
		}
		for _, ch := range checks {
			c := Claim{Store: st.Store, What: ch.what, Limit: ch.limit, Worst: claimWorstMissing, OK: true}
			for _, r := range s.Revisions[1:] {
				if r.LowerBound < 0 {
					return nil // no lower bound: nothing to claim
				}
				v := ch.val(r, r.Stores[si])
				if v > c.Worst {
					c.Worst, c.Rev = v, r.N
				}
			}
			c.OK = c.Worst <= c.Limit
			out = append(out, c)
		}
	}
	return out
}

// ratioOrMissing is a/b; a zero b (nothing to send) counts as 0 when a is
// 0 too and as MaxFloat64 otherwise (JSON has no infinity), so the claim
// fails visibly.
func ratioOrMissing(a, b int64) float64 {
	if b <= 0 {
		if a == 0 {
			return 0
		}
		return math.MaxFloat64
	}
	return float64(a) / float64(b)
}

// WriteOutput writes report.md, report.json and one SVG per series into dir.
func WriteOutput(dir string, r *Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write bench output: %w", err)
	}
	write := func(name string, fn func(io.Writer) error) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("write bench output: %w", err)
		}
		if err := fn(f); err != nil {
			_ = f.Close()
			return fmt.Errorf("write bench output %s: %w", name, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("write bench output %s: %w", name, err)
		}
		return nil
	}
	if err := write("report.md", func(w io.Writer) error { return WriteMarkdown(w, r) }); err != nil {
		return err
	}
	if err := write("report.json", func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}); err != nil {
		return err
	}
	for _, s := range r.Series {
		if err := write(SVGName(s), func(w io.Writer) error { return WriteSVG(w, s) }); err != nil {
			return err
		}
	}
	return nil
}

// ReadJSON reads a report written by WriteOutput (report.json), so the
// markdown and charts can be rendered again without rerunning.
func ReadJSON(r io.Reader) (*Report, error) {
	var rep Report
	if err := json.NewDecoder(r).Decode(&rep); err != nil {
		return nil, fmt.Errorf("read bench report: %w", err)
	}
	return &rep, nil
}

// SVGName is the file name WriteOutput gives the chart of s.
func SVGName(s *SeriesResult) string { return s.Name + ".svg" }

func mb(n int64) string {
	if n < 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f MB", float64(n)/1e6)
}

func xr(v float64) string {
	switch {
	case v >= math.MaxFloat64:
		return "inf"
	case v < 0:
		return "-"
	case v >= 100:
		return fmt.Sprintf("%.0fx", v)
	case v >= 10:
		return fmt.Sprintf("%.1fx", v)
	default:
		return fmt.Sprintf("%.2fx", v)
	}
}

func rss(kb int64) string {
	if kb <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MiB", float64(kb)/1024)
}

// WriteMarkdown writes the report: a summary of the claims, then per series
// a bytes table and, per store, a speed table with ratios to the baselines
// of the same run.
func WriteMarkdown(w io.Writer, r *Report) error {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "Machine: %s  \n", r.Machine)
	fmt.Fprintf(&b, "Run: %s, %.0f s; memory %s, overlay %s, tar %s (inserts of %s), %d revisions per series, zstd parts of %s, chunker polynomial %#x; stores: %s  \n",
		r.Started.Format(time.RFC3339), r.Seconds, humanBytes(c.MemorySize), humanBytes(c.OverlaySize), humanBytes(c.TarSize),
		humanBytes(int64(c.TarInsertSize)), c.Revisions, humanBytes(r.PartSize), c.Polynomial, strings.Join(r.Stores, ", "))
	restic := r.Restic
	if restic == "" {
		restic = "not run"
	}
	fmt.Fprintf(&b, "restic: %s  \nMemory: %s\n\n", restic, r.RSSMethod)

	b.WriteString("### Summary (worst revision after the first)\n\n")
	b.WriteString("| series | store | upload / lower bound | warm pull / lower bound | upload / whole-file | upload / zstd parts | claims |\n|---|---|---|---|---|---|---|\n")
	for _, s := range r.Series {
		if len(s.Claims) == 0 {
			fmt.Fprintf(&b, "| %s | all | no lower bound | | | | not checked |\n", s.Name)
			continue
		}
		byStore := map[string]map[string]Claim{}
		var order []string
		for _, cl := range s.Claims {
			if byStore[cl.Store] == nil {
				byStore[cl.Store] = map[string]Claim{}
				order = append(order, cl.Store)
			}
			byStore[cl.Store][cl.What] = cl
		}
		for _, st := range order {
			m := byStore[st]
			verdict := "hold"
			var bad []string
			for _, what := range []string{ClaimUpload, ClaimPull, ClaimVsWholeFile, ClaimVsZstdParts} {
				if !m[what].OK {
					bad = append(bad, what)
				}
			}
			if len(bad) > 0 {
				verdict = "**FAIL: " + strings.Join(bad, ", ") + "**"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", s.Name, st,
				xr(m[ClaimUpload].Worst), xr(m[ClaimPull].Worst), xr(m[ClaimVsWholeFile].Worst), xr(m[ClaimVsZstdParts].Worst), verdict)
		}
	}
	fmt.Fprintf(&b, "\nLimits: upload and warm pull <= %.1fx the lower bound; upload <= %.1fx of whole-file and of zstd parts (\"far below\").\n",
		MaxUploadOverLowerBound, MaxUploadOverBaseline)

	for _, s := range r.Series {
		writeSeriesMarkdown(&b, s)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeSeriesMarkdown(b *strings.Builder, s *SeriesResult) {
	fmt.Fprintf(b, "\n### %s\n\n%s.\n\n![%s](%s)\n\n", s.Name, s.Description, s.Name, SVGName(s))
	if len(s.Revisions) == 0 {
		return
	}
	stores := s.Revisions[0].Stores
	b.WriteString("Bytes per revision (epoch-dedup: every byte at the object-store client, metadata included):\n\n| rev | size | lower bound |")
	for _, st := range stores {
		fmt.Fprintf(b, " upload (%[1]s) | ÷ LB | warm pull (%[1]s) | ÷ LB |", st.Store)
	}
	b.WriteString(" whole-file | zstd parts | restic adds |\n|---|---|---|")
	for range stores {
		b.WriteString("---|---|---|---|")
	}
	b.WriteString("---|---|---|\n")
	for _, r := range s.Revisions {
		fmt.Fprintf(b, "| %d | %s | %s |", r.N, mb(r.Bytes), mb(r.LowerBound))
		for _, st := range r.Stores {
			fmt.Fprintf(b, " %s | %s | %s | %s |", mb(st.Push.Bytes), lbRatio(st.Push.Bytes, r.LowerBound),
				mb(st.Pull.Bytes), lbRatio(st.Pull.Bytes, r.LowerBound))
		}
		restic := "-"
		if r.Restic != nil {
			restic = mb(r.Restic.Bytes)
		}
		fmt.Fprintf(b, " %s | %s | %s |\n", mb(r.WholeFile), mb(r.ZstdParts), restic)
	}
	for si, st := range stores {
		fmt.Fprintf(b, "\nSpeed and memory, %s store (ratios marked vs are baseline time / epoch-dedup time, >1 means epoch-dedup is faster; push ÷ read once is push time over the time to read the files once; rev 0 is the cold push into an empty store and the pull onto an empty node):\n\n", st.Store)
		b.WriteString("| rev | push | push RSS | push ÷ read once | vs plain PUT | vs restic backup | restic RSS | warm pull | pull RSS | vs plain GET |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range s.Revisions {
			sr := r.Stores[si]
			resticVs, resticRSS := "-", "-"
			if r.Restic != nil {
				resticVs = fmt.Sprintf("%s (%.2f s)", xr(ratio(r.Restic.Seconds, sr.Push.Seconds)), r.Restic.Seconds)
				resticRSS = rss(r.Restic.MaxRSSKB)
			}
			fmt.Fprintf(b, "| %d | %.2f s | %s | %s (%.2f s) | %s (%.2f s) | %s | %s | %.2f s | %s | %s (%.2f s) |\n",
				r.N, sr.Push.Seconds, rss(sr.Push.MaxRSSKB),
				xr(ratio(sr.Push.Seconds, r.ReadSeconds)), r.ReadSeconds,
				xr(ratio(sr.PlainPut.Seconds, sr.Push.Seconds)), sr.PlainPut.Seconds,
				resticVs, resticRSS,
				sr.Pull.Seconds, rss(sr.Pull.MaxRSSKB),
				xr(ratio(sr.PlainGet.Seconds, sr.Pull.Seconds)), sr.PlainGet.Seconds)
		}
	}
	for _, cp := range s.Cold {
		fmt.Fprintf(b, "\nCold pull of the last revision onto an empty node, %s store: %.2f s, %s downloaded, RSS %s; plain GET of the same files %.2f s (%s the GET's speed)",
			cp.Store, cp.Pull.Seconds, mb(cp.Pull.Bytes), rss(cp.Pull.MaxRSSKB), cp.PlainGet.Seconds, xr(ratio(cp.PlainGet.Seconds, cp.Pull.Seconds)))
		if s.ResticRestore != nil {
			fmt.Fprintf(b, "; restic restore %.2f s (%s faster), RSS %s", s.ResticRestore.Seconds,
				xr(ratio(s.ResticRestore.Seconds, cp.Pull.Seconds)), rss(s.ResticRestore.MaxRSSKB))
		}
		b.WriteString(".\n")
	}
}

func lbRatio(n, lb int64) string {
	if lb <= 0 {
		return "-"
	}
	return xr(float64(n) / float64(lb))
}

// chartLine is one method's bytes per revision.
type chartLine struct {
	name   string
	color  string
	dash   string
	values []int64
}

// WriteSVG writes a line chart of the bytes each method moves per revision
// of s, on a log scale (the methods differ by orders of magnitude). The
// epoch-dedup lines are those of the first store (the folder store).
func WriteSVG(w io.Writer, s *SeriesResult) error {
	lines := chartLines(s)
	const (
		width, height = 760, 380
		left, right   = 80, 210
		top, bottom   = 40, 50
	)
	pw, ph := float64(width-left-right), float64(height-top-bottom)
	lo, hi := math.Inf(1), 0.0
	for _, l := range lines {
		for _, v := range l.values {
			if v > 0 {
				lo, hi = math.Min(lo, float64(v)), math.Max(hi, float64(v))
			}
		}
	}
	if hi == 0 {
		lo, hi = 1, 10
	}
	dlo, dhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dhi == dlo {
		dhi++
	}
	n := len(s.Revisions)
	x := func(i int) float64 {
		if n <= 1 {
			return float64(left) + pw/2
		}
		return float64(left) + pw*float64(i)/float64(n-1)
	}
	y := func(v float64) float64 { return float64(top) + ph*(1-(math.Log10(v)-dlo)/(dhi-dlo)) }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="14" font-weight="bold">%s: bytes moved per revision (log scale)</text>`+"\n", left, esc(s.Name))
	for d := dlo; d <= dhi; d++ {
		yy := y(math.Pow(10, d))
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, yy, float64(left)+pw, yy)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, yy+4, esc(decadeLabel(d)))
	}
	for i := range n {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", x(i), height-bottom+18, s.Revisions[i].N)
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">revision</text>`+"\n", float64(left)+pw/2, height-12)
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%.1f" fill="none" stroke="#888"/>`+"\n", left, top, pw, ph)
	for li, l := range lines {
		var pts []string
		for i, v := range l.values {
			if v > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(float64(v))))
			}
		}
		dash := ""
		if l.dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, l.dash)
		}
		if len(pts) > 0 {
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), l.color, dash)
			for _, p := range pts {
				xy := strings.SplitN(p, ",", 2)
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", xy[0], xy[1], l.color)
			}
		}
		ly := top + 10 + li*20
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`+"\n", width-right+15, ly, width-right+40, ly, l.color, dash)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", width-right+46, ly+4, esc(l.name))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func chartLines(s *SeriesResult) []chartLine {
	n := len(s.Revisions)
	col := func(f func(RevisionResult) int64) []int64 {
		out := make([]int64, n)
		for i, r := range s.Revisions {
			out[i] = f(r)
		}
		return out
	}
	lines := []chartLine{
		{"whole-file (v0.1.x)", "#d62728", "", col(func(r RevisionResult) int64 { return r.WholeFile })},
		{"zstd 512 MiB parts", "#ff7f0e", "", col(func(r RevisionResult) int64 { return r.ZstdParts })},
	}
	if n > 0 && s.Revisions[0].Restic != nil {
		lines = append(lines, chartLine{"restic adds", "#9467bd", "", col(func(r RevisionResult) int64 {
			if r.Restic == nil {
				return 0
			}
			return r.Restic.Bytes
		})})
	}
	if n > 0 && len(s.Revisions[0].Stores) > 0 {
		lines = append(lines,
			chartLine{"epoch-dedup upload", "#1f77b4", "", col(func(r RevisionResult) int64 { return r.Stores[0].Push.Bytes })},
			chartLine{"epoch-dedup warm pull", "#17becf", "6,3", col(func(r RevisionResult) int64 { return r.Stores[0].Pull.Bytes })},
		)
	}
	if n > 0 && s.Revisions[0].LowerBound >= 0 {
		lines = append(lines, chartLine{"lower bound", "#2ca02c", "2,3", col(func(r RevisionResult) int64 { return r.LowerBound })})
	}
	return lines
}

func decadeLabel(d float64) string {
	v := math.Pow(10, d)
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%g GB", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%g MB", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%g kB", v/1e3)
	default:
		return fmt.Sprintf("%g B", v)
	}
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
