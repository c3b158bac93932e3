package main

import (
	"context"
	"errors"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cocoonstack/epoch-dedup/cocoon"
	"github.com/cocoonstack/epoch-dedup/manifest"
	"github.com/cocoonstack/epoch-dedup/registry"
)

// repoEntry is one repository in "ls" output.
type repoEntry struct {
	Name      string    `json:"name"`
	Tags      []string  `json:"tags"`
	UpdatedAt time.Time `json:"updated_at"`
}

// tagEntry is one tag in "ls NAME" output.
type tagEntry struct {
	Tag       string    `json:"tag"`
	Digest    string    `json:"digest"`
	TotalSize int64     `json:"total_size"`
	Files     int       `json:"files"`
	PushedAt  time.Time `json:"pushed_at"`
}

func newLsCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "ls [NAME]",
		Short: "List repositories, or the tags of one",
		Long: `Without NAME, list the repositories of the store's catalog with their tags.
With NAME, list its tags with manifest digest, size, file count and push time.`,
		Example: `  epoch-dedup ls
  epoch-dedup ls myvm
  epoch-dedup ls myvm --json`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if len(argv) == 1 {
				if err := manifest.ValidateName(argv[0]); err != nil {
					return &usageError{err}
				}
				return a.withRegistry(func(reg *registry.Registry) error {
					return a.lsTags(cmd.Context(), reg, argv[0])
				})
			}
			return a.withRegistry(func(reg *registry.Registry) error {
				return a.lsRepos(cmd.Context(), reg)
			})
		},
	}
}

func (a *app) lsRepos(ctx context.Context, reg *registry.Registry) error {
	cat, err := reg.GetCatalog(ctx)
	if err != nil {
		return err
	}
	repos := []repoEntry{}
	for _, name := range slices.Sorted(maps.Keys(cat.Repositories)) {
		r := cat.Repositories[name]
		if r == nil {
			continue
		}
		repos = append(repos, repoEntry{Name: name, Tags: slices.Sorted(maps.Keys(r.Tags)), UpdatedAt: r.UpdatedAt})
	}
	if a.json {
		return a.printJSON(map[string]any{"repositories": repos})
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	defer func() { _ = tw.Flush() }()
	_, _ = tw.Write([]byte("REPOSITORY\tTAGS\tUPDATED\n"))
	for _, r := range repos {
		a.fprintf(tw, "%s\t%s\t%s\n", r.Name, joinTags(r.Tags), when(r.UpdatedAt))
	}
	return nil
}

func (a *app) lsTags(ctx context.Context, reg *registry.Registry, name string) error {
	tags, err := reg.ListTags(ctx, name)
	if err != nil {
		return err
	}
	out := []tagEntry{}
	for _, tag := range tags {
		data, err := reg.ManifestJSON(ctx, name, tag)
		if errors.Is(err, registry.ErrManifestNotFound) {
			continue // removed since the listing
		}
		if err != nil {
			return err
		}
		e := tagEntry{Tag: tag, Digest: manifest.Digest(data)}
		if m, err := manifest.Parse(data); err == nil {
			e.TotalSize, e.Files, e.PushedAt = m.TotalSize, len(m.Layers), m.PushedAt
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return registryNotFound(name)
	}
	if a.json {
		return a.printJSON(map[string]any{"name": name, "tags": out})
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	defer func() { _ = tw.Flush() }()
	_, _ = tw.Write([]byte("TAG\tDIGEST\tSIZE\tFILES\tPUSHED\n"))
	for _, e := range out {
		a.fprintf(tw, "%s\tsha256:%s\t%s\t%d\t%s\n", e.Tag, short(e.Digest), cocoon.HumanSize(e.TotalSize), e.Files, when(e.PushedAt))
	}
	return nil
}

func registryNotFound(name string) error {
	return &notFoundError{name: name}
}

// notFoundError: a repository without tags.
type notFoundError struct{ name string }

func (e *notFoundError) Error() string { return "repository " + e.name + ": no tags" }

func joinTags(tags []string) string {
	const maxShown = 8
	s := ""
	for i, t := range tags {
		if i == maxShown {
			return s + ", ..."
		}
		if i > 0 {
			s += ", "
		}
		s += t
	}
	return s
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}
