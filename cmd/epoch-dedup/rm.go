package main

import (
	"github.com/spf13/cobra"

	"github.com/cocoonstack/epoch-dedup/registry"
)

func newRmCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME:TAG",
		Short: "Remove a tag",
		Long: `Remove the tag NAME:TAG (the tag must be spelled out). Content it
referenced stays in the store, since other revisions share it; the
manifest stays reachable by digest.`,
		Example: `  epoch-dedup rm myvm:old`,
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if !hasTag(argv[0]) {
				return usagef("rm %q: give the tag explicitly, as NAME:TAG", argv[0])
			}
			name, tag, err := parseRef(argv[0])
			if err != nil {
				return err
			}
			return a.withRegistry(func(reg *registry.Registry) error {
				if err := reg.DeleteManifest(cmd.Context(), name, tag); err != nil {
					return err
				}
				if a.json {
					return a.printJSON(map[string]string{"removed": name + ":" + tag, "name": name, "tag": tag})
				}
				a.printf("removed %s:%s\n", name, tag)
				return nil
			})
		},
	}
}
