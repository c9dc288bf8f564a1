package cli

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// TestSweepLog: a background sweep's failure is a warning, unless the node
// is stopping; what it did is said only when it did something.
func TestSweepLog(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	live := context.Background()
	stopping, cancel := context.WithCancel(live)
	cancel()
	for _, c := range []struct {
		ctx  context.Context
		n    int64
		err  error
		want string
	}{
		{live, 3, nil, `level=INFO msg="keys forgotten" count=3`},
		{live, 0, nil, ""},
		{live, 0, errors.New("disk full"), `level=WARN msg="forget keys" err="disk full"`},
		{live, 2, errors.New("disk full"), `level=WARN msg="forget keys" err="disk full"`},
		{stopping, 0, context.Canceled, ""},
	} {
		buf.Reset()
		sweepLog(c.ctx, logger, "forget keys", "keys forgotten", "count", c.n, c.err)
		if got := strings.TrimSpace(buf.String()); (c.want == "") != (got == "") || !strings.Contains(got, c.want) || strings.Count(got, "\n") > 0 {
			t.Errorf("n=%d err=%v: logged %q, want %q", c.n, c.err, got, c.want)
		}
	}
}
