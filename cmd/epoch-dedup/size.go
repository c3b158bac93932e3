package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/cocoonstack/epoch-dedup/cocoon"
)

// sizeFlag is a byte count flag accepting "256MiB", "1G", "4096", ...
// (K, M, G, T with optional "i" and "B" are powers of 1024).
type sizeFlag int64

func (s *sizeFlag) String() string { return cocoon.HumanSize(int64(*s)) }

func (s *sizeFlag) Type() string { return "size" }

func (s *sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}

func parseSize(v string) (int64, error) {
	t := strings.TrimSpace(v)
	num := strings.TrimRightFunc(t, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.ToUpper(strings.TrimSpace(t[len(num):]))
	unit = strings.TrimSuffix(strings.TrimSuffix(unit, "B"), "I")
	shift := map[string]uint{"": 0, "K": 10, "M": 20, "G": 30, "T": 40}
	sh, ok := shift[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("size %q: want a number with an optional unit (KiB, MiB, GiB)", v)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<50)>>sh {
		return 0, fmt.Errorf("size %q out of range", v)
	}
	return n << sh, nil
}
