package cli

import (
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/store"
)

func TestZZProfile(t *testing.T) {
	if os.Getenv("ZZPROF") == "" {
		t.Skip()
	}
	e := &env{stdout: io.Discard, stderr: io.Discard}
	r, err := benchCivstack(context.Background(), e, store.Options{DataDir: t.TempDir()}, "x", 2048, 2*time.Second, 60000)
	t.Logf("%+v %v", r, err)
}
