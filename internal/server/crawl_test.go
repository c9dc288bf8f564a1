package server_test

import (
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/civstack/civstack/internal/demo"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestCrawlDemo walks the demo as every persona, on both engines: every
// page a link on a page leads to answers (no 4xx for a link the node
// printed itself, no 5xx, no template or format residue, an outline a
// screen reader can follow: pageOutline), and every form
// on them (posted, or sent as a query), as the page offers it and with
// values no person would type (empty, very long, a NUL with markup),
// answers without a 5xx, and where a plausible answer leads answers too. Every export it reaches
// opens (CSV, JSON). A month later (consents, tokens and sessions lapsed)
// every persona's pages are read again, in the state all the forms left.
// At the end the node has logged no error, no person's name or id and
// nothing the forms were sent. The pages' own tests check what they say;
// this one checks that none of them breaks.
func TestCrawlDemo(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startCrawledDemo(t, e)
			var names []string
			for name := range w.people {
				names = append(names, name)
			}
			slices.Sort(names)
			var problems []string
			pages, exports, sent := 0, 0, 0
			followed, outlined := map[string]bool{}, map[string]bool{}
			clients := map[string]*client{}
			for pass := range 2 {
				if pass == 1 {
					w.n.clock.add(31 * 24 * time.Hour)
					clients = map[string]*client{}
				}
				for _, name := range names {
					if clients[name] == nil {
						clients[name] = w.as(t, name)
					}
					c := clients[name]
					n, x, forms, pp := crawlPages(c, name)
					pages, exports = pages+n, exports+x
					problems = append(problems, pp...)
					if pass == 1 {
						continue
					}
					for _, f := range forms {
						for _, junk := range []string{"", "as offered", "12", strings.Repeat("é", 3000), "\x00<b>'\""} {
							if junk == "as offered" && strings.HasSuffix(f.action, "/members/revoke") {
								continue // it would take the other personas' roles, and the second pass's pages
							}
							sent++
							var r *response
							if f.get {
								base, _, _ := strings.Cut(f.action, "#")
								r = c.get(base + "?" + f.values(junk).Encode())
							} else {
								r = c.postForm(f.action, f.values(junk))
							}
							if r.status >= 500 {
								problems = append(problems, fmt.Sprintf("%s: %s with %.12q: %d", name, f.action, junk, r.status))
							}
							if strings.HasPrefix(r.body, "<!doctype html>") { // the page it answers with, an error's too
								for _, p := range pageOutline(r.body) {
									if k := f.action + ": " + p; !outlined[k] {
										outlined[k] = true
										problems = append(problems, fmt.Sprintf("%s: the answer to %s with %.12q: %s", name, f.action, junk, p))
									}
								}
							}
							// Where an answer sends one, and what it links to (a
							// sale's QR page polls its status, say), answers too.
							if junk != "12" {
								continue
							}
							next, _ := crawlParse(r.body)
							if r.status == http.StatusSeeOther {
								next = []string{r.header.Get("Location")}
							}
							for _, l := range next {
								if crawlable(l) && !followed[l] {
									followed[l] = true
									if lr := c.get(l); lr.status >= 400 {
										problems = append(problems, fmt.Sprintf("%s: GET %s (after sending %s): %d", name, l, f.action, lr.status))
									}
								}
							}
						}
					}
				}
			}
			logs := w.n.logs.String()
			if errs := logErrors(logs); len(errs) > 0 {
				problems = append(problems, errs...)
			}
			// No personal data, and none of what the forms were sent, in the logs.
			for name, id := range w.people {
				for _, private := range []string{name, id} {
					if strings.Contains(logs, private) {
						problems = append(problems, fmt.Sprintf("the logs name %q", private))
					}
				}
			}
			for _, junk := range []string{"éééé", "<b>", `\xc3\xa9\xc3\xa9`} {
				if strings.Contains(logs, junk) {
					problems = append(problems, fmt.Sprintf("the logs hold what a form was sent (%q)", junk))
				}
			}
			t.Logf("%d pages read (%d of them exports), %d forms sent and %d pages they led to read, as %d personas", pages, exports, sent, len(followed), len(names))
			if pages < 10*len(names) || exports < 5 || sent < 100 {
				t.Fatalf("the crawl reached too little (%d pages, %d exports, %d forms): it checks nothing", pages, exports, sent)
			}
			if len(problems) > 0 {
				t.Fatalf("%d problems:\n%s", len(problems), strings.Join(problems, "\n"))
			}
		})
	}
}

// startCrawledDemo is a demo node with what serve --demo seeds besides
// the people (the exchange's services, policies and requests), for a crawl.
func startCrawledDemo(t *testing.T, e storetest.Engine) *demoWorld {
	t.Helper()
	w := startDemo(t, e)
	if err := demo.SeedExchange(context.Background(), w.n.reg, w.n.ex); err != nil {
		t.Fatal(err)
	}
	return w
}

// crawlPages reads the pages c reaches from the home page by links (at
// most 60), and returns how many it read, how many of them were exports
// (CSV or JSON), the forms on them (one per action) and what is
// wrong with them.
func crawlPages(c *client, name string) (pages, exports int, forms []crawlForm, problems []string) {
	actions := map[string]bool{}
	seen := map[string]bool{"/": true}
	queue := []string{"/"}
	for len(queue) > 0 && pages < 60 {
		u := queue[0]
		queue = queue[1:]
		r := c.get(u)
		pages++
		if r.status >= 400 {
			problems = append(problems, fmt.Sprintf("%s: GET %s (a link the node printed): %d", name, u, r.status))
			continue
		}
		switch ct := r.header.Get("Content-Type"); {
		case strings.HasPrefix(ct, "text/csv"):
			// An export opens: a byte order mark, then one header and rows
			// of its width.
			body, bom := strings.CutPrefix(r.body, "\ufeff")
			if rows, err := csv.NewReader(strings.NewReader(body)).ReadAll(); !bom || err != nil || len(rows) == 0 {
				problems = append(problems, fmt.Sprintf("%s: GET %s is not a CSV file with a byte order mark and a header: %v", name, u, err))
			}
			exports++
			continue
		case strings.Contains(ct, "json"):
			if !json.Valid([]byte(r.body)) {
				problems = append(problems, fmt.Sprintf("%s: GET %s is not JSON", name, u))
			}
			exports++
			continue
		case !strings.HasPrefix(ct, "text/html"):
			continue
		}
		for _, residue := range []string{"<no value>", "%!", "0001-01-01", "1 Jan 0001", "1 Jan 1970", "NaN", "&lt;nil&gt;"} {
			if strings.Contains(r.body, residue) {
				problems = append(problems, fmt.Sprintf("%s: GET %s shows %q", name, u, residue))
			}
		}
		if strings.HasPrefix(r.body, "<!doctype html>") { // a page, not a fragment a page polls
			for _, p := range pageOutline(r.body) {
				problems = append(problems, fmt.Sprintf("%s: GET %s: %s", name, u, p))
			}
		}
		links, fs := crawlParse(r.body)
		for _, l := range links {
			if !seen[l] && crawlable(l) {
				seen[l] = true
				queue = append(queue, l)
			}
		}
		for _, f := range fs {
			if !actions[f.action] && crawlable(f.action) {
				actions[f.action] = true
				forms = append(forms, f)
			}
		}
	}
	return pages, exports, forms, problems
}

// crawlable: a page of the node's own that a crawl may open or post to:
// not the demo's sign-in, not signing out, not static files or the
// log's tiles.
func crawlable(u string) bool {
	return strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "//") && !strings.HasPrefix(u, "/demo/") && !strings.HasPrefix(u, "/static/") &&
		!strings.HasPrefix(u, "/log/tile/") && u != "/signout"
}

// logErrors lists the node's logged errors.
func logErrors(logs string) []string {
	var out []string
	for line := range strings.Lines(logs) {
		if strings.Contains(line, "level=ERROR") {
			out = append(out, "logged: "+strings.TrimSpace(line))
		}
	}
	return out
}

// crawlForm is a form: its action, how it is sent and its controls as the page
// offers them.
type crawlForm struct {
	action string
	get    bool // a form sent as a query (a filter, a day, an export)
	fields []crawlField
}

type crawlField struct {
	name, value string
	hidden      bool // a hidden input, a checkbox, a select or a button: what the page chose
}

// values is the form with every field the person types set to junk,
// or, for "as offered", as the page fills it (the people's fields empty).
// Junk goes into the page's own choices too, except for "as offered".
func (f crawlForm) values(junk string) url.Values {
	v := url.Values{}
	for _, fl := range f.fields {
		switch {
		case junk == "as offered" && fl.hidden:
			v.Add(fl.name, fl.value)
		case junk == "as offered":
			v.Add(fl.name, "")
		default:
			v.Add(fl.name, junk)
		}
	}
	return v
}

// crawlParse finds a page's links (paths without their fragment) and its
// forms.
func crawlParse(page string) ([]string, []crawlForm) {
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		return nil, nil
	}
	var links []string
	var forms []crawlForm
	var cur *crawlForm
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			a := map[string]string{}
			for _, at := range n.Attr {
				a[at.Key] = at.Val
			}
			if get := a["hx-get"]; get != "" {
				links = append(links, get) // a fragment the page polls
			}
			switch n.Data {
			case "a":
				if href, _, _ := strings.Cut(a["href"], "#"); href != "" {
					links = append(links, href)
				}
			case "form":
				if a["action"] != "" {
					forms = append(forms, crawlForm{action: a["action"], get: !strings.EqualFold(a["method"], http.MethodPost)})
					cur = &forms[len(forms)-1]
					for c := n.FirstChild; c != nil; c = c.NextSibling {
						walk(c)
					}
					cur = nil
					return
				}
			case "input", "select", "textarea", "button":
				if cur != nil && a["name"] != "" {
					typ := a["type"]
					if typ == "checkbox" || typ == "radio" {
						if _, on := a["checked"]; !on {
							break
						}
					}
					value := a["value"]
					if n.Data == "select" {
						value = firstOption(n)
					}
					hidden := typ == "hidden" || typ == "checkbox" || typ == "radio" || n.Data == "select" || n.Data == "button" || typ == "submit"
					cur.fields = append(cur.fields, crawlField{name: a["name"], value: value, hidden: hidden})
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return links, forms
}

// pageOutline lists what a screen reader's user would trip over on a
// page: no lang, not one h1, a heading that skips a level (an h3 under an
// h1), an id used twice, and a form control that no label names (a label
// around it or for its id, aria-label, aria-labelledby or a title).
func pageOutline(page string) []string {
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		return []string{"not HTML: " + err.Error()}
	}
	var out []string
	ids, labelled := map[string]int{}, map[string]bool{}
	var controls []string // the ids (or names) of controls no label is around
	h1s, last := 0, 0
	var walk func(n *html.Node, inLabel bool)
	walk = func(n *html.Node, inLabel bool) {
		if n.Type == html.ElementNode {
			a := map[string]string{}
			for _, at := range n.Attr {
				a[at.Key] = at.Val
			}
			if id := a["id"]; id != "" {
				ids[id]++
			}
			switch n.Data {
			case "html":
				if a["lang"] == "" {
					out = append(out, "<html> has no lang")
				}
			case "h1", "h2", "h3", "h4", "h5", "h6":
				level := int(n.Data[1] - '0')
				if level == 1 {
					h1s++
				}
				if last > 0 && level > last+1 {
					out = append(out, fmt.Sprintf("an h%d follows an h%d", level, last))
				}
				last = level
			case "label":
				if f := a["for"]; f != "" {
					labelled[f] = true
				}
				inLabel = true
			case "input", "select", "textarea":
				if t := a["type"]; t == "hidden" || t == "submit" || t == "button" || inLabel || a["aria-label"] != "" || a["aria-labelledby"] != "" || a["title"] != "" {
					break
				}
				controls = append(controls, cmp.Or(a["id"], "\x00"+n.Data+" "+a["name"]))
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, inLabel)
		}
	}
	walk(doc, false)
	if h1s != 1 {
		out = append(out, fmt.Sprintf("%d h1 elements", h1s))
	}
	for id, n := range ids {
		if n > 1 {
			out = append(out, fmt.Sprintf("the id %q is used %d times", id, n))
		}
	}
	for _, c := range controls {
		if !labelled[c] {
			out = append(out, fmt.Sprintf("no label names the control %q", strings.TrimPrefix(c, "\x00")))
		}
	}
	slices.Sort(out)
	return out
}

// firstOption is the value of a select's first option.
func firstOption(sel *html.Node) string {
	var found *html.Node
	var find func(n *html.Node)
	find = func(n *html.Node) {
		for c := n.FirstChild; c != nil && found == nil; c = c.NextSibling {
			if c.Type == html.ElementNode && c.Data == "option" {
				found = c
				return
			}
			find(c)
		}
	}
	find(sel)
	if found == nil {
		return ""
	}
	for _, at := range found.Attr {
		if at.Key == "value" {
			return at.Val
		}
	}
	if found.FirstChild != nil {
		return found.FirstChild.Data
	}
	return ""
}
