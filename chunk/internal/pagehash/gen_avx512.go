//go:build ignore

// gen_avx512 writes hash_avx512_amd64.s, the AVX-512 kernel of the
// package:
//
//	go run gen_avx512.go > hash_avx512_amd64.s
//
// The kernel keeps the whole BLAKE3 state in registers: the sixteen state
// words in Z0-Z15 and the sixteen message words of the block in sixteen of
// Z8-Z31 (the transposition of a block uses Z8-Z31 and leaves the eight it
// does not need for state words 8-15). Nothing is spilled to the stack.
package main

import (
	"fmt"
	"os"
	"strings"
)

var b strings.Builder

func emit(format string, args ...any) {
	fmt.Fprintf(&b, "\t"+format+"\n", args...)
}

func comment(s string) { fmt.Fprintf(&b, "\n\t// %s\n", s) }

// msgPerm is BLAKE3's message permutation between rounds.
var msgPerm = [16]int{2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8}

// schedule[r][i] is the message word used at position i of round r.
var schedule = func() (s [7][16]int) {
	for i := range 16 {
		s[0][i] = i
	}
	for r := 1; r < 7; r++ {
		for i := range 16 {
			s[r][i] = s[r-1][msgPerm[i]]
		}
	}
	return s
}()

// compress emits the seven rounds of the compression function on the state
// registers v and message registers m, all of the width prefix p ("Z", "Y"
// or "X"), and then sets v[0..7] to the output chaining value
// v[i] ^ v[i+8].
func compress(p string, v, m [16]int) {
	r := func(i int) string { return fmt.Sprintf("%s%d", p, i) }
	for round := range 7 {
		comment(fmt.Sprintf("Round %d", round+1))
		s := schedule[round]
		// Columns, then diagonals: four G functions interleaved.
		for half := range 2 {
			var a, bb, c, d [4]int
			for g := range 4 {
				if half == 0 {
					a[g], bb[g], c[g], d[g] = g, 4+g, 8+g, 12+g
				} else {
					a[g], bb[g], c[g], d[g] = g, 4+(g+1)%4, 8+(g+2)%4, 12+(g+3)%4
				}
			}
			for step := range 2 {
				rotD, rotB := 16, 12
				if step == 1 {
					rotD, rotB = 8, 7
				}
				for g := range 4 {
					emit("VPADDD  %s, %s, %s", r(m[s[8*half+2*g+step]]), r(v[a[g]]), r(v[a[g]]))
				}
				for g := range 4 {
					emit("VPADDD  %s, %s, %s", r(v[bb[g]]), r(v[a[g]]), r(v[a[g]]))
				}
				for g := range 4 {
					emit("VPXORD  %s, %s, %s", r(v[a[g]]), r(v[d[g]]), r(v[d[g]]))
				}
				for g := range 4 {
					emit("VPRORD  $%d, %s, %s", rotD, r(v[d[g]]), r(v[d[g]]))
				}
				for g := range 4 {
					emit("VPADDD  %s, %s, %s", r(v[d[g]]), r(v[c[g]]), r(v[c[g]]))
				}
				for g := range 4 {
					emit("VPXORD  %s, %s, %s", r(v[c[g]]), r(v[bb[g]]), r(v[bb[g]]))
				}
				for g := range 4 {
					emit("VPRORD  $%d, %s, %s", rotB, r(v[bb[g]]), r(v[bb[g]]))
				}
			}
		}
	}
	comment("Output chaining value")
	for i := range 8 {
		emit("VPXORD  %s, %s, %s", r(v[i+8]), r(v[i]), r(v[i]))
	}
}

// pool hands out the vector registers Z8-Z31 during the transposition.
type pool struct{ free []int }

func (p *pool) get() int {
	x := p.free[0]
	p.free = p.free[1:]
	return x
}

func (p *pool) put(xs ...int) { p.free = append(p.free, xs...) }

func z(i int) string { return fmt.Sprintf("Z%d", i) }

// loadBlock loads the block at offset SI of the sixteen chunks (lane 4p+c
// is chunk c of the page whose address is in pageReg[p]) and transposes
// it: m[w] is the register holding message word w of all sixteen lanes.
// The eight registers of Z8-Z31 left over are returned in rest.
func loadBlock(pageReg [4]string) (m [16]int, rest [8]int) {
	var p pool
	for i := 8; i < 32; i++ {
		p.put(i)
	}
	comment("Load the block of each lane: row l is lane l's sixteen words")
	var row [16]int
	for l := range 16 {
		row[l] = p.get()
		off := ""
		if c := l % 4; c != 0 {
			off = fmt.Sprint(1024 * c)
		}
		emit("VMOVDQU32 %s(%s)(SI*1), %s", off, pageReg[l/4], z(row[l]))
	}
	comment("Transpose 16x16: interleave words, quadwords, then 128-bit lanes twice")
	// ab[2i] = unpacklo32(row 2i, row 2i+1), ab[2i+1] = unpackhi32(...).
	var ab [16]int
	for i := range 8 {
		lo, hi := p.get(), p.get()
		emit("VPUNPCKLDQ %s, %s, %s", z(row[2*i+1]), z(row[2*i]), z(lo))
		emit("VPUNPCKHDQ %s, %s, %s", z(row[2*i+1]), z(row[2*i]), z(hi))
		p.put(row[2*i], row[2*i+1])
		ab[2*i], ab[2*i+1] = lo, hi
	}
	// q[4g+j], for rows 4g..4g+3: 128-bit lane k holds word 4k+j of those
	// four rows.
	var q [16]int
	for g := range 4 {
		lo0, lo1 := ab[4*g], ab[4*g+2] // unpacklo32 of rows (4g,4g+1), (4g+2,4g+3)
		hi0, hi1 := ab[4*g+1], ab[4*g+3]
		for j, u := range []struct {
			op   string
			x, y int
		}{
			{"VPUNPCKLQDQ", lo0, lo1},
			{"VPUNPCKHQDQ", lo0, lo1},
			{"VPUNPCKLQDQ", hi0, hi1},
			{"VPUNPCKHQDQ", hi0, hi1},
		} {
			d := p.get()
			emit("%s %s, %s, %s", u.op, z(u.y), z(u.x), z(d))
			q[4*g+j] = d
		}
		p.put(lo0, lo1, hi0, hi1)
	}
	// h[2*j + half] for half 0 (rows 0-7) and 1 (rows 8-15), j in 0..7:
	// lanes [rows 0-3 (or 8-11) word w, word w+8, rows 4-7 (12-15) word
	// w, word w+8] with w = j.
	var h [8][2]int
	for half := range 2 {
		for j := range 4 {
			x, y := q[8*half+j], q[8*half+4+j]
			lo, hi := p.get(), p.get()
			emit("VSHUFI32X4 $0x88, %s, %s, %s", z(y), z(x), z(lo))
			emit("VSHUFI32X4 $0xdd, %s, %s, %s", z(y), z(x), z(hi))
			p.put(x, y)
			h[j][half], h[4+j][half] = lo, hi
		}
	}
	for w := range 8 {
		x, y := h[w][0], h[w][1]
		lo, hi := p.get(), p.get()
		emit("VSHUFI32X4 $0x88, %s, %s, %s", z(y), z(x), z(lo))
		emit("VSHUFI32X4 $0xdd, %s, %s, %s", z(y), z(x), z(hi))
		p.put(x, y)
		m[w], m[w+8] = lo, hi
	}
	copy(rest[:], p.free)
	return m, rest
}

// chunks emits the sixteen-lane chunk compression: on return Z0-Z7 hold
// the chaining values, word w of lane l in lane l of Zw.
func chunks(pageReg [4]string) {
	comment("Chaining values start as the IV")
	for i := range 8 {
		emit("VPBROADCASTD iv16<>+%d(SB), Z%d", 4*i, i)
	}
	emit("XORQ SI, SI")
	emit("LEAQ flags16<>(SB), R8")
	fmt.Fprintf(&b, "\nblock:")
	m, rest := loadBlock(pageReg)
	var v [16]int
	for i := range 8 {
		v[i] = i
		v[8+i] = rest[i]
	}
	comment("State words 8-15: IV, counters, block length, flags")
	for i := range 4 {
		emit("VPBROADCASTD iv16<>+%d(SB), %s", 4*i, z(v[8+i]))
	}
	emit("VMOVDQU32 counter16<>(SB), %s", z(v[12]))
	emit("VPXORD %s, %s, %s", z(v[13]), z(v[13]), z(v[13]))
	emit("VPBROADCASTD blocklen16<>(SB), %s", z(v[14]))
	emit("MOVQ SI, R9")
	emit("SHRQ $4, R9")
	emit("VPBROADCASTD (R8)(R9*1), %s", z(v[15]))
	compress("Z", v, m)
	comment("Next block")
	emit("ADDQ $64, SI")
	emit("CMPQ SI, $1024")
	emit("JNE  block")
}

// parents emits the tree of the four pages above the chunk chaining values
// in Z0-Z7, leaving the roots in X0-X7 (lane p: page p).
func parents() {
	for _, level := range []struct {
		wide, narrow string
		flags        int
	}{{"Z", "Y", 4}, {"Y", "X", 12}} {
		if level.flags == 4 {
			comment("Parents: lane j joins chunks 2j and 2j+1 (even and odd lanes)")
		} else {
			comment("Roots: lane p joins page p's two halves (even and odd lanes)")
		}
		var m, v [16]int
		for w := range 8 {
			m[w], m[8+w] = 16+w, 24+w
			emit("VPMOVQD %s%d, %s%d", level.wide, w, level.narrow, m[w])
			emit("VPSRLQ  $32, %s%d, %s%d", level.wide, w, level.wide, w)
			emit("VPMOVQD %s%d, %s%d", level.wide, w, level.narrow, m[8+w])
		}
		n := level.narrow
		for i := range 16 {
			v[i] = i
		}
		for i := range 8 {
			emit("VPBROADCASTD iv16<>+%d(SB), %s%d", 4*i, n, i)
		}
		for i := range 4 {
			emit("VPBROADCASTD iv16<>+%d(SB), %s%d", 4*i, n, 8+i)
		}
		emit("VPXORD %s12, %s12, %s12", n, n, n)
		emit("VPXORD %s13, %s13, %s13", n, n, n)
		emit("VPBROADCASTD blocklen16<>(SB), %s14", n)
		emit("VPBROADCASTD parentflags16<>+%d(SB), %s15", 4*(level.flags/8), n)
		compress(n, v, m)
	}
}

func data() {
	iv := [8]uint32{
		0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
		0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
	}
	for i, x := range iv {
		fmt.Fprintf(&b, "DATA iv16<>+%d(SB)/4, $0x%08x\n", 4*i, x)
	}
	fmt.Fprintf(&b, "GLOBL iv16<>(SB), RODATA|NOPTR, $32\n\n")
	for l := range 16 {
		fmt.Fprintf(&b, "DATA counter16<>+%d(SB)/4, $%d\n", 4*l, l%4)
	}
	fmt.Fprintf(&b, "GLOBL counter16<>(SB), RODATA|NOPTR, $64\n\n")
	fmt.Fprintf(&b, "DATA blocklen16<>+0(SB)/4, $64\n")
	fmt.Fprintf(&b, "GLOBL blocklen16<>(SB), RODATA|NOPTR, $4\n\n")
	// Indexed by the block's number in its chunk: CHUNK_START on the first
	// block, CHUNK_END on the last.
	for blk := range 16 {
		f := 0
		switch blk {
		case 0:
			f = 1
		case 15:
			f = 2
		}
		fmt.Fprintf(&b, "DATA flags16<>+%d(SB)/4, $%d\n", 4*blk, f)
	}
	fmt.Fprintf(&b, "GLOBL flags16<>(SB), RODATA|NOPTR, $64\n\n")
	fmt.Fprintf(&b, "DATA parentflags16<>+0(SB)/4, $4\n")
	fmt.Fprintf(&b, "DATA parentflags16<>+4(SB)/4, $12\n")
	fmt.Fprintf(&b, "GLOBL parentflags16<>(SB), RODATA|NOPTR, $8\n")
}

func main() {
	b.WriteString(`// Code generated by gen_avx512.go; DO NOT EDIT.

// The AVX-512 kernel of the package. The algorithm and the lane layout are
// those of hash_amd64.s, derived from github.com/zeebo/blake3 v0.2.4
// internal/alg/hash/hash_avx2 (CC0 1.0, public domain; generated there by
// avo), and the transposition of the message words follows the one in the
// BLAKE3 reference implementation, blake3_avx512.c (CC0 1.0 / Apache 2.0). What
// changed from the AVX2 kernel: 16 lanes in Z registers instead of 8 in Y
// registers (lane 4p+c is chunk c of page p, so the chunk counters are
// 0,1,2,3 four times and one call hashes four pages); rotations with
// VPRORD instead of byte shuffles and shift-or pairs; the state and the
// message words stay in registers, nothing is spilled; and the same call
// goes on to merge the two tree levels of the four pages (8 parents in Y
// registers, then the 4 roots in X registers) and stores the four digests.

//go:build amd64 && !purego

#include "textflag.h"

`)
	data()
	pages := [4]string{"AX", "BX", "CX", "DX"}

	b.WriteString(`
// func hash4AVX512(p0, p1, p2, p3 *[Size]byte, out *[4][32]byte)
// Requires: AVX512F, AVX512VL
TEXT ·hash4AVX512(SB), NOSPLIT, $0-40
`)
	emit("MOVQ p0+0(FP), AX")
	emit("MOVQ p1+8(FP), BX")
	emit("MOVQ p2+16(FP), CX")
	emit("MOVQ p3+24(FP), DX")
	emit("MOVQ out+32(FP), DI")
	chunks(pages)
	parents()
	comment("Transpose the roots (4 lanes x 8 words) into the four digests")
	emit("VPUNPCKLDQ X1, X0, X8")
	emit("VPUNPCKHDQ X1, X0, X9")
	emit("VPUNPCKLDQ X3, X2, X10")
	emit("VPUNPCKHDQ X3, X2, X11")
	emit("VPUNPCKLDQ X5, X4, X12")
	emit("VPUNPCKHDQ X5, X4, X13")
	emit("VPUNPCKLDQ X7, X6, X14")
	emit("VPUNPCKHDQ X7, X6, X15")
	emit("VPUNPCKLQDQ X10, X8, X0")
	emit("VPUNPCKLQDQ X14, X12, X1")
	emit("VPUNPCKHQDQ X10, X8, X2")
	emit("VPUNPCKHQDQ X14, X12, X3")
	emit("VPUNPCKLQDQ X11, X9, X4")
	emit("VPUNPCKLQDQ X15, X13, X5")
	emit("VPUNPCKHQDQ X11, X9, X6")
	emit("VPUNPCKHQDQ X15, X13, X7")
	emit("VMOVDQU X0, (DI)")
	for i := 1; i < 8; i++ {
		emit("VMOVDQU X%d, %d(DI)", i, 16*i)
	}
	emit("VZEROUPPER")
	emit("RET")
	os.Stdout.WriteString(b.String())
}
