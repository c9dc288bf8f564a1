package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/civstack/civstack/internal/tlog"
)

// logMarkFile, in the data directory, holds the newest checkpoint this node
// signed (tlog.ReadMark): a database restored from a backup, or another
// database, is refused before the node signs a second history.
const logMarkFile = "log.checkpoint"

// logMarkEvery is how often a serving node writes its newest checkpoint to
// the mark: often enough that a restore of any backup is caught, rarely
// enough to stay off the log's path.
const logMarkEvery = time.Second

// checkLogMark refuses to serve a database whose log does not extend the
// checkpoint this node last signed, unless flagged (--accept-log-rewind) or
// demo (a demo's log is thrown away with its database, say to start the
// demo afresh): then it logs a warning and marks the database's newest
// checkpoint instead (or removes the mark when it has none yet).
func checkLogMark(ctx context.Context, tl *tlog.Log, data string, flagged, demo bool, logger *slog.Logger) error {
	path := filepath.Join(data, logMarkFile)
	mark, ok, err := tlog.ReadMark(path)
	if err != nil {
		return fmt.Errorf("the checkpoint this node last signed: %w", err)
	}
	if ok {
		err = tl.CheckMark(ctx, mark)
	}
	accept := flagged || demo
	switch {
	case err == nil && flagged:
		logger.Warn("--accept-log-rewind is set, and the log was not rewound: remove the flag, so that a later rewind is caught")
		return nil
	case errors.Is(err, tlog.ErrRewound) && accept:
		logger.Warn("serving a rewound transparency log (--accept-log-rewind, or a demo): auditors that kept a later checkpoint will report it", "err", err)
		if mark.Origin == tl.Origin() { // the same log, rewound: say so in it
			idx, err := tl.DeclareRewind(ctx, mark)
			if err != nil {
				return fmt.Errorf("declaring the rewind in the log: %w", err)
			}
			logger.Warn("the log declares the rewind", "entry", idx, "replaced_size", mark.Size)
		}
		_, latest, err := tl.Latest(ctx)
		if errors.Is(err, tlog.ErrNotFound) {
			return os.Remove(path)
		}
		if err != nil {
			return err
		}
		return tlog.WriteMark(path, latest)
	case errors.Is(err, tlog.ErrRewound):
		return fmt.Errorf("%v (%s). Was the database restored from a backup, or is it another one? Serving it would sign a second history of the log; read \"Backups and restoring\" in docs/operations.md, then start with --accept-log-rewind to serve it anyway", err, path)
	}
	return err
}

// keepLogMark writes the newest checkpoint in latest to the mark in data
// whenever it changed, every interval, and a last time when stopped closes
// (after the integrator has stopped signing).
func keepLogMark(data string, latest *atomic.Pointer[tlog.Checkpoint], every time.Duration, stopped <-chan struct{}, logger *slog.Logger) {
	path := filepath.Join(data, logMarkFile)
	var written int64 = -1
	write := func() {
		cp := latest.Load()
		if cp == nil || cp.Size == written {
			return
		}
		if err := tlog.WriteMark(path, *cp); err != nil {
			logger.Error("writing the log's mark", "path", path, "err", err)
			return
		}
		written = cp.Size
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stopped:
			write()
			return
		case <-t.C:
			write()
		}
	}
}
