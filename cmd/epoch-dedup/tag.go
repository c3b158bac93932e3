package main

import (
	"github.com/spf13/cobra"

	"github.com/cocoonstack/epoch-dedup/registry"
)

func newTagCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "tag SRC[:TAG] DST[:TAG]",
		Short: "Give a pushed revision another name or tag",
		Long: `Make DST:TAG name the same content as SRC:TAG (both tags "latest" by
default). Only a manifest is written: no content moves.`,
		Example: `  epoch-dedup tag myvm:latest myvm:golden
  epoch-dedup tag myvm:hibernate template/web:v2`,
		Args: args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			src, srcTag, err := parseRef(argv[0])
			if err != nil {
				return err
			}
			dst, dstTag, err := parseRef(argv[1])
			if err != nil {
				return err
			}
			return a.withRegistry(func(reg *registry.Registry) error {
				digest, err := reg.TagDigest(cmd.Context(), src, srcTag, dst, dstTag)
				if err != nil {
					return err
				}
				if a.json {
					return a.printJSON(map[string]string{
						"source": src + ":" + srcTag, "name": dst, "tag": dstTag, "digest": digest,
					})
				}
				a.printf("tagged %s:%s as %s:%s (sha256:%s)\n", src, srcTag, dst, dstTag, short(digest))
				return nil
			})
		},
	}
}
