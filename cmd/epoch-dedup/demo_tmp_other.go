//go:build !linux

package main

// demoTempBase returns "" (the default temporary folder) off Linux.
func demoTempBase(_, _ int64, _ int) string { return "" }
