package store

import (
	"errors"
	"fmt"
	"testing"
)

// TestRootCause: the innermost message, on one line, each line once (pgx
// says every way it tried on a line of its own). That Open's error keeps
// the driver's cause is TestStorageErrors' (internal/cli).
func TestRootCause(t *testing.T) {
	refused := errors.New("127.0.0.1:1: connect: connection refused\n127.0.0.1:1: connect: connection refused\n")
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("open: %w", fmt.Errorf("dial: %w", refused)), "127.0.0.1:1: connect: connection refused"},
		{errors.New("tls: no\n\nplain: refused\n"), "tls: no; plain: refused"},
		{errors.New("  one  "), "one"},
	} {
		if got := rootCause(c.err); got != c.want {
			t.Errorf("rootCause(%q) = %q, want %q", c.err, got, c.want)
		}
	}
}
