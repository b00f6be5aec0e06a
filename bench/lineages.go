package main

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/certbus/certbus/internal/testcerts"
)

// lineage is one certbot lineage the bench wrote.
type lineage struct {
	Name        string   // live/<Name>
	Live        string   // its live directory
	Names       []string // DNS names of its leaf
	Fingerprint string
	Leaf        *testcerts.Leaf
}

// lineageNames are the DNS names of bench lineage i: a name and its www.
func lineageNames(i int) []string {
	n := fmt.Sprintf("d%05d.bench.test", i)
	return []string{n, "www." + n}
}

// writeLineages issues n ECDSA leaves from the shared test CA and lays them
// out as certbot does under le (version 1), on every core.
func writeLineages(le string, n int) ([]lineage, error) {
	out := make([]lineage, n)
	errs := make([]error, n)
	work := make(chan int)
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				names := lineageNames(i)
				leaf, err := testcerts.Shared().Issue(names, testcerts.Options{Key: testcerts.ECDSA})
				if err != nil {
					errs[i] = err
					continue
				}
				live, err := testcerts.WriteLineage(le, names[0], 1, leaf)
				if err != nil {
					errs[i] = err
					continue
				}
				out[i] = lineage{Name: names[0], Live: live, Names: names, Fingerprint: leaf.Fingerprint, Leaf: leaf}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("write lineages: %w", err)
		}
	}
	return out, nil
}
