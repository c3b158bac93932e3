package bench

import (
	"fmt"
	"io"
	"slices"
)

// WriteBlobMarkdown writes r as a markdown table of ratios against the
// baselines of the same run.
func WriteBlobMarkdown(w io.Writer, r *BlobResult) error {
	mb := func(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
	secs := func(s float64) string { return fmt.Sprintf("%.2f s", s) }
	// timed is a median with the range of its rounds.
	timed := func(t Timed) string {
		if len(t.Runs) < 2 {
			return secs(t.Seconds)
		}
		return fmt.Sprintf("%.2f s (median of %d, %.2f-%.2f)", t.Seconds, len(t.Runs), slices.Min(t.Runs), slices.Max(t.Runs))
	}
	var rows [][5]string
	rows = append(rows, [5]string{
		fmt.Sprintf("stored by the 2nd version (%.0f%% pages rewritten)", r.Change*100),
		mb(r.SecondPush.Bytes), "zstd of the rewritten pages " + mb(r.LowerBound),
		fmt.Sprintf("%.2fx the lower bound", ratio(float64(r.SecondPush.Bytes), float64(r.LowerBound))), "<= 1.5x",
	})
	if r.ResticSecond != nil {
		rows = append(rows, [5]string{
			"restic adds for the 2nd version", mb(r.ResticSecond.Bytes), "zstd of the rewritten pages " + mb(r.LowerBound),
			fmt.Sprintf("%.1fx the lower bound", ratio(float64(r.ResticSecond.Bytes), float64(r.LowerBound))), "(reference)",
		})
	}
	if r.ResticFirst != nil {
		rows = append(rows, [5]string{
			"first push " + humanBytes(r.Size), timed(r.FirstPush), "restic backup " + timed(*r.ResticFirst),
			fmt.Sprintf("%.1fx faster", ratio(r.ResticFirst.Seconds, r.FirstPush.Seconds)), ">= 2x",
		})
		rows = append(rows, [5]string{
			"same content again from a new file", timed(r.RePush), "restic backup --force " + timed(*r.ResticForce),
			fmt.Sprintf("%.1fx faster", ratio(r.ResticForce.Seconds, r.RePush.Seconds)), ">= 5x",
		})
	} else {
		rows = append(rows, [5]string{"first push " + humanBytes(r.Size), timed(r.FirstPush), "restic not installed", "-", ">= 2x"})
	}
	if r.RSSPush != nil {
		rows = append(rows, [5]string{
			"peak RSS, push of " + humanBytes(r.RSSSize), humanBytes(r.RSSPush.MaxRSSKB << 10), "-",
			fmt.Sprintf("%.0f%% of the limit", 100*float64(r.RSSPush.MaxRSSKB<<10)/float64(256<<20)), "< 256 MiB",
		})
		rows = append(rows, [5]string{
			"peak RSS, pull of " + humanBytes(r.RSSSize), humanBytes(r.RSSPull.MaxRSSKB << 10), "-",
			fmt.Sprintf("%.0f%% of the limit", 100*float64(r.RSSPull.MaxRSSKB<<10)/float64(256<<20)), "< 256 MiB",
		})
	}
	if r.S3PullBlob != nil {
		rows = append(rows, [5]string{
			"PullBlob " + humanBytes(r.Size) + " from S3 (cold node)", secs(r.S3PullBlob.Seconds),
			"one plain GET of " + humanBytes(r.S3PlainGet.Bytes) + " into a file, synced, " + secs(r.S3PlainGetFile.Seconds),
			fmt.Sprintf("%.2fx the GET's speed", ratio(r.S3PlainGetFile.Seconds, r.S3PullBlob.Seconds)), ">= 1x",
		})
		rows = append(rows, [5]string{
			"the same, against a GET whose body is discarded", secs(r.S3PullBlob.Seconds),
			"one plain GET, body discarded, " + secs(r.S3PlainGet.Seconds),
			fmt.Sprintf("%.2fx", ratio(r.S3PlainGet.Seconds, r.S3PullBlob.Seconds)), "(reference)",
		})
	}
	if sp := r.S3Snapshot; sp != nil {
		get := min(sp.GetBefore.Seconds, sp.GetAfter.Seconds)
		rows = append(rows, [5]string{
			"cold pull of a " + humanBytes(sp.Size) + " snapshot (memory-ranges, sparse, and its JSON files) from S3, own process",
			secs(sp.Pull.Seconds) + ", " + mb(sp.Pull.Bytes) + " downloaded",
			"plain GETs of its files into synced files, before / after the pull: " + secs(sp.GetBefore.Seconds) + " / " + secs(sp.GetAfter.Seconds),
			fmt.Sprintf("%.2fx the faster GET's speed", ratio(get, sp.Pull.Seconds)), ">= 1x",
		})
		rows = append(rows, [5]string{
			"peak RSS of that pull", humanBytes(sp.Pull.MaxRSSKB << 10), "-",
			fmt.Sprintf("%.0f%% of the limit", 100*float64(sp.Pull.MaxRSSKB<<10)/float64(256<<20)), "< 256 MiB",
		})
	}
	if _, err := fmt.Fprintf(w, "Machine: %s\n\n| measure | epoch-dedup | baseline (same run) | ratio | target |\n|---|---|---|---|---|\n", r.Machine); err != nil {
		return err
	}
	for _, row := range rows {
		if _, err := fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", row[0], row[1], row[2], row[3], row[4]); err != nil {
			return err
		}
	}
	return nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
