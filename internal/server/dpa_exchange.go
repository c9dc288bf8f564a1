package server

import (
	"cmp"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/civstack/civstack/internal/exchange"
	"github.com/civstack/civstack/internal/web"
)

// The data-protection authority's look into one agency's accesses (from a
// row of the per-agency counts), page by page, the same as a CSV file, and
// its denied, refused, cancelled and lapsed requests.

// dpaPageSize is the default number of accesses on a page; ?n= asks for
// up to dpaMaxPage.
const (
	dpaPageSize           = 100
	dpaMaxPage            = 1000
	dpaExportChunkDefault = 1000
)

// dpaChunk is how many records the CSV exports read at a time (0: the
// default of 1,000): they stream, so an agency's whole history takes the
// memory of a chunk. Tests set it to make a few records span chunks.
var dpaChunk atomic.Int64

func dpaExportChunk() int { return int(cmp.Or(dpaChunk.Load(), dpaExportChunkDefault)) }

// orgIDRE bounds the agency a filter accepts (with the exchange's purpose
// codes), so that bad input gets a clear answer.
var orgIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// dpaFilter is the agency, purpose, whether only deferred accesses, the
// days (From and To as given, YYYY-MM-DD in the node's zone, both
// included; "" for open) and the page a DPA asked for.
type dpaFilter struct {
	Agency, Purpose string
	Deferred        bool
	From, To        string
	from, to        time.Time // the first instant of From, and of the day after To
	Before          int64
	N               int
}

// accesses is what the filter selects, as the exchange takes it: a page
// of limit from the log index before on.
func (f dpaFilter) accesses(before int64, limit int) exchange.AccessQuery {
	return exchange.AccessQuery{Agency: f.Agency, Purpose: f.Purpose, Deferred: f.Deferred, From: f.from, To: f.to, Before: before, Limit: limit}
}

// unpaged is the filter without its page (the CSV's and the newest page's).
func (f dpaFilter) unpaged() dpaFilter {
	f.Before, f.N = 0, dpaPageSize
	return f
}

// query is the filter as a URL query (without the page), for links.
func (f dpaFilter) query() string {
	q := url.Values{}
	if f.Agency != "" {
		q.Set("agency", f.Agency)
	}
	if f.Purpose != "" {
		q.Set("purpose", f.Purpose)
	}
	if f.Deferred {
		q.Set("deferred", "1")
	}
	if f.From != "" {
		q.Set("from", f.From)
	}
	if f.To != "" {
		q.Set("to", f.To)
	}
	if f.N != dpaPageSize {
		q.Set("n", strconv.Itoa(f.N))
	}
	return q.Encode()
}

// older is the link to the page after this one: path with the filter and
// param=value, the last row's cursor.
func (f dpaFilter) older(path, param, value string) string {
	q := f.query()
	if q != "" {
		q += "&"
	}
	return path + "?" + q + param + "=" + url.QueryEscape(value)
}

// agencyName is an organisation's name, or its id if it has none (or the
// id is empty, or the registry cannot be read: a label is not worth failing
// a page for, but the failure is logged).
func (s *Server) agencyName(ctx context.Context, id string) string {
	if id == "" {
		return ""
	}
	o, err := s.reg.Organisation(ctx, id)
	if err == nil {
		return o.Name
	}
	s.labelFailed(err)
	return id
}

// parseDPAFilter reads a DPA's list query; days are the node's (zone).
func parseDPAFilter(r *http.Request, zone *time.Location) (dpaFilter, string) {
	q := r.URL.Query()
	f := dpaFilter{Agency: q.Get("agency"), Purpose: q.Get("purpose"), N: dpaPageSize}
	if f.Agency != "" && !orgIDRE.MatchString(f.Agency) {
		return f, "The agency is not an organisation id."
	}
	if f.Purpose != "" && !exchange.ValidPurpose(f.Purpose) {
		return f, "The purpose is not a purpose code (2 to 40 capitals, digits or dashes, e.g. TAX-AUDIT)."
	}
	switch q.Get("deferred") {
	case "":
	case "1":
		f.Deferred = true
	default:
		return f, "deferred=1 lists only the accesses the citizen cannot see yet; leave it out for all of them."
	}
	for _, d := range []struct {
		name  string
		text  *string
		start *time.Time
		after int // days after the day given
	}{{"from", &f.From, &f.from, 0}, {"to", &f.To, &f.to, 1}} {
		v := q.Get(d.name)
		if v == "" {
			continue
		}
		day, err := time.ParseInLocation(time.DateOnly, v, zone)
		if err != nil {
			return f, "The day " + d.name + " is a date such as 2026-11-30."
		}
		if day.Year() < 2000 {
			return f, "The day " + d.name + " is in the year 2000 or later: the log holds nothing older."
		}
		*d.text, *d.start = v, day.AddDate(0, 0, d.after)
	}
	if f.From != "" && f.To != "" && !f.to.After(f.from) {
		return f, "The day to comes before the day from."
	}
	if s := q.Get("before"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return f, "The page to start from (before) must be a positive log index."
		}
		f.Before = n
	}
	if s := q.Get("n"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > dpaMaxPage {
			return f, fmt.Sprintf("The page size (n) must be a number from 1 to %d.", dpaMaxPage)
		}
		f.N = n
	}
	return f, ""
}

// failExchange answers an exchange error on the error page: its status
// and sentence (a bad page link is the asker's error, not the server's).
func (s *Server) failExchange(w http.ResponseWriter, r *http.Request, err error) {
	s.exchangeFail(w, r, err, func(code int, msg string) { s.fail(w, r, code, msg) })
}

// dpaFirst reads the filter and its first size(filter) accesses, or
// answers the error and reports false.
func (s *Server) dpaFirst(w http.ResponseWriter, r *http.Request, size func(dpaFilter) int) (dpaFilter, []*exchange.Access, bool) {
	f, bad := parseDPAFilter(r, s.cfg.Zone)
	if bad != "" {
		s.fail(w, r, http.StatusBadRequest, bad)
		return f, nil, false
	}
	as, err := s.ex.Accesses(r.Context(), f.accesses(f.Before, size(f)))
	if err != nil {
		s.failExchange(w, r, err)
		return f, nil, false
	}
	return f, as, true
}

// dpaAccesses is the page: the filter, a page of accesses newest first and
// a link to the older ones.
func (s *Server) dpaAccesses(w http.ResponseWriter, r *http.Request, v *viewer) {
	// One more than the page shows: whether there are older ones.
	f, as, ok := s.dpaFirst(w, r, func(f dpaFilter) int { return f.N + 1 })
	if !ok {
		return
	}
	ctx := r.Context()
	older := ""
	if len(as) > f.N {
		as = as[:f.N]
		older = f.older("/dpa/exchange/accesses", "before", strconv.FormatInt(as[len(as)-1].LogIndex, 10))
	}
	agencyName := s.agencyName(ctx, f.Agency)
	withQuery := func(path, q string) string {
		if q == "" {
			return path
		}
		return path + "?" + q
	}
	csvURL := withQuery("/dpa/exchange/accesses.csv", f.unpaged().query())
	s.render(w, r, v, http.StatusOK, "dpa_accesses", web.Page{Title: "Data protection: accesses", Data: map[string]any{
		"Filter": f, "AgencyName": agencyName, "Accesses": as, "Older": older, "CSV": csvURL, "Now": s.now(), "Paged": f.Before > 0,
		"Newest": withQuery("/dpa/exchange/accesses", f.query()), "Zone": s.cfg.Zone.String(),
	}})
}

// dpaAccessesCSV streams every access the filter selects, newest first, as
// CSV (RFC 4180) a spreadsheet opens.
func (s *Server) dpaAccessesCSV(w http.ResponseWriter, r *http.Request, v *viewer) {
	// The first chunk before any header: an error still gets its page.
	chunk := dpaExportChunk()
	f, as, ok := s.dpaFirst(w, r, func(dpaFilter) int { return chunk })
	if !ok {
		return
	}
	rows := func(as []*exchange.Access) [][]string {
		var out [][]string
		for _, a := range as {
			state := "kept"
			if a.Missing {
				state = "MISSING from the database"
			}
			out = append(out, []string{s.csvTime(a.Time), strconv.FormatInt(a.LogIndex, 10), a.AgencyName, a.Agency, a.Officer, a.ServiceName,
				strings.Join(a.Fields, " "), a.Purpose, a.LegalBasis, a.Consent, s.csvVisible(a), s.csvTime(a.RetainUntil), state})
		}
		return out
	}
	last := as
	deferred := ""
	if f.Deferred {
		deferred = "deferred"
	}
	days := ""
	if f.From != "" || f.To != "" {
		days = cmp.Or(f.From, "start") + "-to-" + cmp.Or(f.To, "now")
	}
	s.writeCSV(w, csvName("civstack-accesses", s.now(), f.Agency, f.Purpose, deferred, days),
		s.zoned("time", "log entry", "agency", "agency id", "officer", "service", "fields", "purpose", "legal basis", "consent", "visible to the citizen from", "may be kept until", "record"),
		rows(as), func() ([][]string, error) {
			if len(last) < chunk {
				return nil, nil
			}
			var err error
			last, err = s.ex.Accesses(r.Context(), f.accesses(last[len(last)-1].LogIndex, chunk))
			return rows(last), err
		})
}

// dpaDeniedCSV streams every denied, refused, cancelled and lapsed request (of one agency, or
// all), newest first, as CSV.
func (s *Server) dpaDeniedCSV(w http.ResponseWriter, r *http.Request, v *viewer) {
	f, before, ok := s.deniedFilter(w, r)
	if !ok {
		return
	}
	chunk := dpaExportChunk()
	last, err := s.ex.DeniedBy(r.Context(), f.Agency, before, chunk)
	if err != nil {
		s.failExchange(w, r, err)
		return
	}
	rows := func(rs []*exchange.Request) [][]string {
		var out [][]string
		for _, q := range rs {
			out = append(out, []string{s.csvTime(q.Created.UnixMilli()), q.ID, q.RequesterName, q.Requester, q.Officer, cmp.Or(q.ServiceName, q.Service),
				strings.Join(q.Fields, " "), q.Purpose, q.LegalBasis, q.State, q.Reason})
		}
		return out
	}
	s.writeCSV(w, csvName("civstack-denied", s.now(), f.Agency),
		s.zoned("time", "request", "agency", "agency id", "officer", "service", "fields", "purpose", "legal basis", "outcome", "reason"),
		rows(last), func() ([][]string, error) {
			if len(last) < chunk {
				return nil, nil
			}
			var err error
			last, err = s.ex.DeniedBy(r.Context(), f.Agency, last[len(last)-1].ID, chunk)
			return rows(last), err
		})
}

// csvName is a download's file name: base, the filter's parts in lower
// case, and the day.
func csvName(base string, now time.Time, parts ...string) string {
	for _, part := range parts {
		if part != "" {
			base += "-" + strings.ToLower(part)
		}
	}
	return base + "-" + now.UTC().Format("2006-01-02") + ".csv" // the date only names the file
}

// csvVisible is when the citizen sees an access: "at once", or when its
// deferral ends.
func (s *Server) csvVisible(a *exchange.Access) string {
	if a.DeferUntil == 0 {
		return "at once"
	}
	return s.csvTime(a.DeferUntil)
}

// csvTime is a Unix millisecond time as a spreadsheet reads it, in the
// node's zone, or empty for none.
func (s *Server) csvTime(ms int64) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).In(s.cfg.Zone).Format(time.DateTime)
}

// zoned is a CSV header whose columns of times (the first, and the ones
// listed in zonedColumns) name the zone their times are in: "time (UTC)".
func (s *Server) zoned(cols ...string) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c
		if i == 0 || zonedColumns[c] {
			out[i] = c + " (" + s.cfg.Zone.String() + ")"
		}
	}
	return out
}

// zonedColumns are the columns of times besides each CSV's first.
var zonedColumns = map[string]bool{"visible to the citizen from": true, "keep until": true, "may be kept until": true, "access time": true, "answered": true}

// writeCSV sends a CSV download called name: the header, the first rows,
// then whatever next gives until it gives none. The status is sent with
// the header, so a failure later is said in the file, as its last line,
// rather than by ending it short. The file starts with a byte order mark
// (csvBOM), so that a spreadsheet reads its names as UTF-8.
func (s *Server) writeCSV(w http.ResponseWriter, name string, header []string, rows [][]string, next func() ([][]string, error)) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Cache-Control", "no-store")
	lw := newLongWrite(w)
	io.WriteString(lw, csvBOM)
	cw := csv.NewWriter(lw)
	cw.Write(header)
	for len(rows) > 0 {
		for _, row := range rows {
			cw.Write(cells(row...))
		}
		var err error
		if rows, err = next(); err != nil {
			s.log.Error("export failed", "file", name, "err", err)
			cw.Write([]string{"THE EXPORT STOPPED HERE: " + http.StatusText(http.StatusInternalServerError)})
			break
		}
	}
	cw.Flush()
}

// csvBOM is UTF-8's byte order mark. Excel opens a CSV file without it in
// the computer's legacy code page, so "Tomáš Novák" would read "TomĂˇĹˇ
// NovĂˇk"; with it, Excel, LibreOffice and Numbers all read UTF-8, and
// readers that take UTF-8 anyway skip it (Python's "utf-8-sig", pandas).
const csvBOM = "\ufeff"

// writeCSVPages is writeCSV for a list read a chunk at a time: read gives
// up to limit items after the item after (the zero value: from the first),
// and line turns an item into its row. A chunk shorter than the limit is
// the last.
func writeCSVPages[T any](s *Server, w http.ResponseWriter, r *http.Request, name string, header []string,
	read func(after T, limit int) ([]T, error), line func(T) []string) {
	chunk := dpaExportChunk()
	rows := func(items []T) [][]string {
		out := make([][]string, len(items))
		for i, it := range items {
			out[i] = line(it)
		}
		return out
	}
	var start T
	items, err := read(start, chunk)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	s.writeCSV(w, name, header, rows(items), func() ([][]string, error) {
		if len(items) < chunk {
			return nil, nil
		}
		var err error
		if items, err = read(items[len(items)-1], chunk); err != nil {
			return nil, err
		}
		return rows(items), nil
	})
}

// cells makes text safe to open in a spreadsheet: a cell that starts like
// a formula (=, +, -, @, a tab or a carriage return) gets a leading
// apostrophe, so that an officer's name or a legal basis is never run
// as one (CSV injection). A plain negative number (-12.50) is left as it
// is: it cannot be a formula, and a spreadsheet must read it as a number.
func cells(vs ...string) []string {
	for i, v := range vs {
		if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) && !negativeRE.MatchString(v) {
			vs[i] = "'" + v
		}
	}
	return vs
}

// negativeRE is a plain negative amount.
var negativeRE = regexp.MustCompile(`^-[0-9]+(\.[0-9]+)?$`)

// requestIDRE bounds a request id in a page link.
var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

// deniedFilter reads the denied requests' filter (an agency, a page size)
// and the request to page on from (before_request), or answers 400 and
// reports false.
func (s *Server) deniedFilter(w http.ResponseWriter, r *http.Request) (f dpaFilter, before string, ok bool) {
	f, bad := parseDPAFilter(r, s.cfg.Zone)
	before = r.URL.Query().Get("before_request")
	switch {
	case bad != "":
	case f.Purpose != "" || f.Before != 0:
		bad = "Denied requests are listed by agency only (no purpose or log index)."
	case before != "" && !requestIDRE.MatchString(before):
		bad = "The page to start from (before_request) is not a request id."
	}
	if bad != "" {
		s.fail(w, r, http.StatusBadRequest, bad)
		return f, "", false
	}
	return f, before, true
}

// dpaDenied is the DPA's page of denied, refused, cancelled and lapsed requests, of one
// agency or all, newest first, page by page.
func (s *Server) dpaDenied(w http.ResponseWriter, r *http.Request, v *viewer) {
	f, before, ok := s.deniedFilter(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	rs, err := s.ex.DeniedBy(ctx, f.Agency, before, f.N+1)
	if err != nil {
		s.failExchange(w, r, err)
		return
	}
	older := ""
	if len(rs) > f.N {
		rs = rs[:f.N]
		older = f.older("/dpa/exchange/denied", "before_request", rs[len(rs)-1].ID)
	}
	agencyName := s.agencyName(ctx, f.Agency)
	s.render(w, r, v, http.StatusOK, "dpa_denied", web.Page{Title: "Data protection: denied requests", Data: map[string]any{
		"Filter": f, "AgencyName": agencyName, "Requests": rs, "Older": older, "Paged": before != "",
		"AnswerDays": int(exchange.AnswerWithin / exchange.Day), "CollectDays": int(exchange.CollectWithin / exchange.Day),
	}})
}
