// Package conformance locates the external conformance data that civstack's
// tests read (the shared/testdata tree beside the project, never copied into
// it). Tests call File with a path under testdata; it honours the
// CIVSTACK_SHARED variable and otherwise walks up from the test's working
// directory looking for shared/testdata.
package conformance

import (
	"os"
	"path/filepath"
	"testing"
)

// Env names the variable that points at the shared directory (the one
// holding testdata/). .ci/run sets it when it finds the data.
const Env = "CIVSTACK_SHARED"

// Dir returns the shared testdata directory, or "" when none is found.
func Dir() string {
	if d := os.Getenv(Env); d != "" {
		if st, err := os.Stat(filepath.Join(d, "testdata")); err == nil && st.IsDir() {
			return filepath.Join(d, "testdata")
		}
		return ""
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		cand := filepath.Join(dir, "shared", "testdata")
		if st, err := os.Stat(cand); err == nil && st.IsDir() {
			return cand
		}
		if filepath.Dir(dir) == dir {
			return ""
		}
	}
}

// File returns the path of rel (slash-separated, under testdata/) and
// skips the test, saying so, when the shared data is not on this machine.
// When CIVSTACK_SHARED is set but wrong the test fails instead: the operator
// asked for the suite.
func File(tb testing.TB, rel string) string {
	tb.Helper()
	dir := Dir()
	if dir == "" {
		if v := os.Getenv(Env); v != "" {
			tb.Fatalf("%s=%s has no testdata directory", Env, v)
		}
		tb.Skipf("conformance suite skipped: shared/testdata not found above %s (set %s)", mustWd(), Env)
	}
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("conformance data: %v", err)
	}
	return p
}

func mustWd() string {
	wd, _ := os.Getwd()
	return wd
}
