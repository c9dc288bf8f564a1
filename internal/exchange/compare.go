package exchange

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	civtlog "github.com/civstack/civstack/internal/tlog"
)

// ExportSkew is how far apart CompareExports lets the clocks be: the
// clock that stamped an access (the node that released it) and the one
// that stamped the earlier export (perhaps another node on the same
// database). An access made less than this before the earlier export, and
// not at a log entry below one that export holds, may be missing from it.
const ExportSkew = 5 * time.Minute

// CompareExports checks a citizen's export (later) against one she made
// before (earlier), offline, with the log's verifier key: that what the
// node showed her then is still there, and that nothing was kept from her.
// It verifies both files as VerifyExport does (the later's checks in full,
// the earlier's as one check), then checks that:
//   - both are of the same citizen, and the earlier was exported first;
//   - the log did not shrink (the later file's newest checkpoint is at
//     least the earlier's size) and never signed two trees of one size;
//   - every access the earlier file proved is in the later one, at the
//     same log entry, with the same entry: one missing, or another entry
//     at its place under a checkpoint signed by the same key, is reported;
//   - every access the later file proves that the earlier should have
//     shown (below the earlier's newest log entry, or made before it was
//     exported, ExportSkew allowed), and not hidden by a deferral when it
//     was, is in the earlier file: one that is not was kept from her.
//
// A deferred access that was hidden when the earlier file was exported
// and shows in the later one is counted, not reported. What it cannot
// check offline is the whole log's history between the two checkpoints
// (civstack log verify --state does, with the log's tiles). Input that is
// not an export is ErrBadExport, saying which file.
func CompareExports(earlier, later io.Reader, logKey string) (*ExportReport, error) {
	if logKey == "" {
		return nil, errors.New("comparing two exports needs the log's verifier key: only accesses proved in the log can be compared")
	}
	ex, err := readExport(later)
	if err != nil {
		return nil, err
	}
	old, err := readExport(earlier)
	if err != nil {
		return nil, fmt.Errorf("the earlier file: %w", err)
	}
	l, e := verifyDoc(ex, logKey), verifyDoc(old, logKey)
	rep := l.rep
	if e.rep.OK() {
		rep.add("earlier export", nil, fmt.Sprintf("%s to the data of %s, exported %s, each checked", Accesses(len(e.Accesses)), e.Person, e.ExportedAt.Format(time.RFC3339)))
	} else {
		rep.add("earlier export", errors.New(e.rep.Failed()), "")
	}
	compare(rep, e, l)
	return rep, nil
}

// compare adds to rep the checks of CompareExports between two checked
// exports.
func compare(rep *ExportReport, e, l *checkedExport) {
	if e.Person != l.Person {
		rep.add("same citizen", fmt.Errorf("the earlier file is of %s, this one of %s", e.Person, l.Person), "")
		return
	}
	if e.ExportedAt.After(l.ExportedAt) {
		rep.add("order", fmt.Errorf("the earlier file was exported %s, after this one (%s): give the older file to --earlier",
			e.ExportedAt.Format(time.RFC3339), l.ExportedAt.Format(time.RFC3339)), "")
		return
	}
	logSize := compareLogs(rep, e, l)

	// Every access the earlier file proved, at its place in the later.
	kept, unproved := 0, 0
	earlier := slices.Sorted(maps.Keys(e.proved))
	for _, i := range earlier {
		a := &e.Accesses[e.proved[i]]
		name := "earlier " + accessName(e.proved[i], a)
		j, ok := l.proved[i]
		switch {
		case ok && bytes.Equal(l.Accesses[j].Proof.Entry, a.Proof.Entry):
			kept++
		case ok:
			rep.add(name, fmt.Errorf("this file has another entry at log entry %d, under a checkpoint signed by the same key: the log was rewritten (keep both files: they are the proof)", i), "")
		case l.lists(a):
			unproved++ // listed, but not proved in this file: its own check says why
		case logSize >= 0 && i >= logSize:
			rep.add(name, fmt.Errorf("log entry %d is missing from this file, whose log has only %d entries: the log was rewound", i, logSize), "")
		default:
			rep.add(name, fmt.Errorf("log entry %d is missing from this file: the node no longer shows you this access", i), "")
		}
	}
	var detail string
	switch kept {
	case 0:
		detail = "the earlier file proves no access in the log that this one holds"
	case 1:
		detail = "the 1 access the earlier file proves in the log is in this one, at the same log entry, unchanged"
	default:
		detail = fmt.Sprintf("the %d accesses the earlier file proves in the log are in this one, at the same log entries, unchanged", kept)
	}
	if n := len(e.unproved); n > 0 {
		detail += fmt.Sprintf("; %d it did not prove not compared", n)
	}
	if unproved > 0 {
		detail += fmt.Sprintf("; %d listed here but not proved (see above)", unproved)
	}
	rep.add("earlier accesses", nil, detail)

	// Every access the later file proves that the earlier should have held.
	newest := int64(-1)
	if len(earlier) > 0 {
		newest = earlier[len(earlier)-1]
	}
	since, shown := 0, 0
	for _, i := range slices.Sorted(maps.Keys(l.proved)) {
		b := &l.Accesses[l.proved[i]]
		if _, ok := e.proved[i]; ok || e.lists(b) {
			continue
		}
		due := i < newest || b.Time.Before(e.ExportedAt.Add(-ExportSkew))
		hidden := b.HiddenUntil.After(e.ExportedAt)
		switch {
		case due && !hidden:
			err := fmt.Errorf("log entry %d is not in the earlier file, though it was made before that file and not hidden from you then: it was kept from you", i)
			if n := len(e.unproved); n > 0 {
				err = fmt.Errorf("%w (unless it is one of the %d the earlier file lists without proof)", err, n)
			}
			rep.add(accessName(l.proved[i], b), err, "")
		case hidden:
			shown++
		default:
			since++
		}
	}
	rep.add("since the earlier export", nil, fmt.Sprintf("%s made since; %s hidden from you then (deferred) and shown now", Accesses(since), Accesses(shown)))
}

// lists reports whether the export lists a in the same words among the
// accesses it does not prove in the log.
func (c *checkedExport) lists(a *ExportedAccess) bool {
	return slices.ContainsFunc(c.unproved, func(k int) bool { return sameAccess(&c.Accesses[k], a) })
}

// compareLogs checks that the log did not shrink or fork between two
// exports, and returns the size of the later's newest checkpoint (-1 if it
// proves nothing).
func compareLogs(rep *ExportReport, e, l *checkedExport) int64 {
	roots := map[int64]civtlog.Checkpoint{}
	for _, cp := range slices.Concat(e.cps, l.cps) {
		if seen, ok := roots[cp.Size]; ok && seen.Root != cp.Root {
			rep.add("log", fmt.Errorf("the log signed two different trees of %d entries (root hashes %s and %s): it was forked (keep both files: they are the proof)",
				cp.Size, base64.StdEncoding.EncodeToString(seen.Root[:]), base64.StdEncoding.EncodeToString(cp.Root[:])), "")
			return largest(l.cps)
		}
		roots[cp.Size] = cp
	}
	before, now := largest(e.cps), largest(l.cps)
	switch {
	case len(l.cps) == 0 && len(e.cps) > 0:
		rep.add("log", fmt.Errorf("this file proves no access in the log, so it cannot show that the log still holds the earlier file's (whose log had %d entries)", before), "")
		return -1
	case len(e.cps) == 0 && len(l.cps) == 0:
		rep.add("log", nil, "neither file proves an access in the log")
	case len(e.cps) == 0:
		rep.add("log", nil, fmt.Sprintf("the earlier file proves nothing in the log; this one's log has %d entries", now))
	case now < before:
		rep.add("log", fmt.Errorf("the log had %d entries when the earlier file was exported, and this file's has %d: it was rewound (restored from a backup, or rewritten)", before, now), "")
	default:
		rep.add("log", nil, fmt.Sprintf("the log grew from %d to %d entries (the whole log's history between them: civstack log verify --state)", before, now))
	}
	return now
}

// largest is the largest size among cps (-1 for none).
func largest(cps []civtlog.Checkpoint) int64 {
	n := int64(-1)
	for _, cp := range cps {
		n = max(n, cp.Size)
	}
	return n
}

// sameAccess reports whether two exported accesses say the same in words.
func sameAccess(a, b *ExportedAccess) bool {
	return a.Agency == b.Agency && a.Service == b.Service && a.Holder == b.Holder && slices.Equal(a.Fields, b.Fields) && a.Purpose == b.Purpose &&
		a.LegalBasis == b.LegalBasis && a.Time.Equal(b.Time) && a.RetainTill.Equal(b.RetainTill) && a.HiddenUntil.Equal(b.HiddenUntil) && a.Consent == b.Consent
}
