package apps

import "strings"

// Index finds the apps serving a domain with map look-ups, so that
// matching N lineages against M apps costs N look-ups per name, not N*M.
type Index struct {
	all   []*Spec
	exact map[string][]*Spec
	wild  map[string][]*Spec // ".example.com" -> apps serving "*.example.com"
}

// NewIndex indexes the specs' current domains.
func NewIndex(specs []*Spec) *Index {
	x := &Index{exact: map[string][]*Spec{}, wild: map[string][]*Spec{}}
	for _, s := range specs {
		s.domMu.RLock()
		if s.All {
			x.all = append(x.all, s)
		}
		for d := range s.exact {
			x.exact[d] = append(x.exact[d], s)
		}
		for suf := range s.wild {
			x.wild[suf] = append(x.wild[suf], s)
		}
		s.domMu.RUnlock()
	}
	return x
}

// Lookup returns the apps serving d (lower-case), each once.
func (x *Index) Lookup(d string) []*Spec {
	out := append([]*Spec(nil), x.all...)
	out = append(out, x.exact[d]...)
	if !strings.HasPrefix(d, "*.") {
		if i := strings.IndexByte(d, '.'); i > 0 {
			out = append(out, x.wild[d[i:]]...)
		}
	}
	if len(out) < 2 {
		return out
	}
	seen := make(map[*Spec]bool, len(out))
	uniq := out[:0]
	for _, s := range out {
		if !seen[s] {
			seen[s] = true
			uniq = append(uniq, s)
		}
	}
	return uniq
}
