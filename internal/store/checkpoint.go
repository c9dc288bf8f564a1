package store

import (
	"context"
	"database/sql"
	"log/slog"
	"sync"
	"time"
)

// checkpointer copies SQLite's write-ahead log back into the database file
// from its own connection, so that commits do not pay for it: the writer
// runs with wal_autocheckpoint off. Passive checkpoints never block the
// writer, but a busy writer begins its next transaction before the log is
// fully copied, so SQLite never starts the log again from the top. Past
// walLimit frames, right after a passive checkpoint has copied nearly all of
// it, a RESTART checkpoint makes the writer wait for the last few frames and
// starts the log again.
type checkpointer struct {
	db     *sql.DB
	logger *slog.Logger
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

const (
	checkpointEvery = 50 * time.Millisecond
	walLimit        = 1 << 15 // frames (128 MiB of 4 KiB pages)
)

func startCheckpointer(db *sql.DB, logger *slog.Logger) *checkpointer {
	c := &checkpointer{db: db, logger: logger, stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

func (c *checkpointer) run() {
	defer close(c.done)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		if frames, err := c.checkpoint("PASSIVE"); err == nil && frames > walLimit {
			// Nearly everything is copied already: the writer waits
			// only for the last few frames and the log's new header.
			c.checkpoint("RESTART")
		}
	}
}

// checkpoint runs one checkpoint and returns the log's size in frames.
func (c *checkpointer) checkpoint(mode string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var busy, frames, done int
	err := c.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &frames, &done)
	if err != nil {
		c.logger.Debug("checkpoint failed", "mode", mode, "err", err)
	}
	return frames, err
}

// close stops the checkpointer; closing twice is harmless.
func (c *checkpointer) close() error {
	var err error
	c.once.Do(func() {
		close(c.stop)
		<-c.done
		err = c.db.Close()
	})
	return err
}
