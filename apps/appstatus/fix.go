package appstatus

import "sort"

// Deploy is a deploy event --fix should send: the certificate file Source
// again, for Domains (sorted), with Info the event's domains argument
// (domain -> info keys of internal/event).
type Deploy struct {
	Source  string
	Domains []string
	Info    map[string]map[string]string
}

// needsFix reports whether deploying the row's certificate again can
// repair it.
func needsFix(r Row) bool {
	return r.src != nil && (r.Daemon == DaemonStale || r.Copy == CopyOutdated || r.Copy == CopyMissing)
}

// Fixable counts the rows --fix can repair: stale, outdated or missing
// with a known certificate.
func (rep *Report) Fixable() int {
	n := 0
	for _, r := range rep.Rows {
		if needsFix(r) {
			n++
		}
	}
	return n
}

// FixPlan lists, sorted by source file, the deploys that repair the
// fixable rows: one per certificate, naming every fixable domain it
// serves. Sent between a pre and a post, they reach every app serving
// those domains, as a renewal would, and each app reloads once. It is
// empty when nothing needs fixing. A report decoded from JSON plans
// nothing.
func (rep *Report) FixPlan() []Deploy {
	groups := map[string]map[string]bool{}
	srcs := map[string]*certSource{}
	for _, r := range rep.Rows {
		if !needsFix(r) {
			continue
		}
		if groups[r.src.path] == nil {
			groups[r.src.path] = map[string]bool{}
		}
		groups[r.src.path][r.Domain] = true
		srcs[r.src.path] = r.src
	}
	paths := make([]string, 0, len(groups))
	for p := range groups {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var out []Deploy
	for _, p := range paths {
		d := Deploy{Source: p, Info: map[string]map[string]string{}}
		for dom := range groups[p] {
			info := map[string]string{}
			for k, v := range srcs[p].paths {
				info[k] = v
			}
			d.Info[dom] = info
			d.Domains = append(d.Domains, dom)
		}
		sort.Strings(d.Domains)
		out = append(out, d)
	}
	return out
}
