package exchange

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// An agency's history of requests comes from two places: the requests
// with a row of their own (denied, waiting for or decided by the citizen,
// collected) ordered by when they were asked, and the direct releases,
// whose access records are the requests, ordered by log entry. A page
// merges the newest of each; its cursor says where it stopped in each, so
// that paging on shows every request once, however the two interleave.

// HistoryPage is one page of an agency's requests, newest first.
type HistoryPage struct {
	Requests []*Request
	// Next is the cursor for the older requests after this page (give it
	// as before); empty on the last page.
	Next string
}

// historyCursor is where a page stopped in each source. The zero of a
// source means it has nothing older; math.MaxInt64 means it has not been
// read yet.
type historyCursor struct {
	at  int64  // rows asked before this (Unix ms), or at it with a smaller id
	id  string // (rows)
	log int64  // direct releases at log indexes below this
}

var historyStart = historyCursor{at: math.MaxInt64, log: math.MaxInt64}

// maxCursorID bounds a cursor's request id (ids are UUIDs; older rows
// carry shorter ones).
const maxCursorID = 100

// String is the cursor as given in a URL: at.log.id.
func (c historyCursor) String() string {
	return strconv.FormatInt(c.at, 10) + "." + strconv.FormatInt(c.log, 10) + "." + c.id
}

// done says whether both sources are spent.
func (c historyCursor) done() bool { return c.at == 0 && c.log == 0 }

// parseHistoryCursor reads a cursor that String wrote; empty is the start.
func parseHistoryCursor(s string) (historyCursor, error) {
	if s == "" {
		return historyStart, nil
	}
	bad := fmt.Errorf("%w: that is not a place in the list of requests (follow the link to older requests)", ErrInvalid)
	parts := strings.SplitN(s, ".", 3)
	if len(parts) != 3 || len(parts[2]) > maxCursorID {
		return historyCursor{}, bad
	}
	at, err1 := strconv.ParseInt(parts[0], 10, 64)
	log, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil || at < 0 || log < 0 {
		return historyCursor{}, bad
	}
	c := historyCursor{at: at, log: log, id: parts[2]}
	if c.done() || c.String() != s { // one spelling per place (no "+1", "01")
		return historyCursor{}, bad
	}
	return c, nil
}

// History returns a page of at most limit of an agency's requests, newest
// first, older than the page whose Next is before (empty: from the newest).
// A page may hold fewer than limit and still have a Next.
func (x *Exchange) History(ctx context.Context, requesterOrg, before string, limit int) (*HistoryPage, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: a page of requests needs a positive size", ErrInvalid)
	}
	c, err := parseHistoryCursor(before)
	if err != nil {
		return nil, err
	}
	var rows []*Request
	if c.at > 0 {
		// One more than a page: if every row fetched is shown, none are left.
		rows, err = x.requests(ctx, `WHERE requester_org = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3)) ORDER BY created_at DESC, id DESC LIMIT $4`,
			requesterOrg, c.at, c.id, limit+1)
		if err != nil {
			return nil, err
		}
	}
	var direct []*Access
	moreLog, lowest := false, int64(0)
	if c.log > 0 {
		// The same: if every release fetched is shown, none are left. A
		// record missing from the database is skipped (the audit reports it).
		as, err := x.accesses(ctx, filter{org: requesterOrg, direct: true, before: c.log, limit: limit + 1, labelled: true})
		if err != nil {
			return nil, err
		}
		moreLog = len(as) > limit
		for _, a := range as {
			lowest = a.LogIndex
			if !a.Missing {
				direct = append(direct, a)
			}
		}
	}

	page := &HistoryPage{}
	next, i, j := c, 0, 0
merge:
	for len(page.Requests) < limit {
		haveRow, haveDirect := i < len(rows), j < len(direct)
		switch {
		case haveRow && (!haveDirect && !moreLog || haveDirect && rows[i].Created.UnixMilli() >= direct[j].Time):
			page.Requests = append(page.Requests, rows[i])
			next.at, next.id = rows[i].Created.UnixMilli(), rows[i].ID
			i++
		case haveDirect:
			page.Requests = append(page.Requests, requestOf(direct[j]))
			next.log = direct[j].LogIndex
			j++
		default:
			// Both spent; or a row left, but releases past the batch
			// (missing records took its places) may be newer.
			break merge
		}
	}
	if i == len(rows) { // fewer than limit+1 fetched, all shown: none older
		next.at, next.id = 0, ""
	}
	if j == len(direct) {
		next.log = 0
		if moreLog {
			next.log = lowest
		}
	}
	if err := x.retainOf(ctx, requesterOrg, page.Requests); err != nil {
		return nil, err
	}
	if !next.done() {
		page.Next = next.String()
	}
	return page, nil
}

// retainOf sets, on the collected requests among rs, until when the agency
// may keep what it got and the policy it was released under, from their
// access records (a direct release's request already has them from its
// own).
func (x *Exchange) retainOf(ctx context.Context, requesterOrg string, rs []*Request) error {
	byID := map[string]*Request{}
	var ids []string
	for _, r := range rs {
		if r.State == Released && r.RetainUntil.IsZero() {
			byID[r.ID] = r
			ids = append(ids, r.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	as, err := x.accesses(ctx, filter{org: requesterOrg, requests: ids, labelled: true})
	if err != nil {
		return err
	}
	for _, a := range as {
		if r := byID[a.Request]; r != nil && !a.Missing {
			r.RetainUntil, r.PolicyID = a.Retain(), cmp.Or(a.Policy, r.PolicyID)
		}
	}
	return nil
}
