package signals

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"
)

// BenchmarkFanout is one event through the signal to n subscribers that
// all decline it, the way every app but a few declines a renewal it does
// not serve: Emit, then Wait until every subscriber has answered. The
// sub-benchmarks are named subs=n so that `benchstat -col /subs` compares
// them; the cost per event grows with the number of apps connected.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 10, 100, 1000} {
		b.Run("subs="+strconv.Itoa(n), func(b *testing.B) {
			s := New[int](0)
			for i := range n {
				if err := s.Connect(fmt.Sprint("app", i), time.Minute, func(context.Context, int) (Status, string) {
					return Skipped, "serves none"
				}); err != nil {
					b.Fatal(err)
				}
			}
			emitAndWait(b, s)
		})
	}
}

// BenchmarkFanoutFiltered is BenchmarkFanout with the declining done by a
// Filter on the dispatcher (what the apps runner does for apps that do not
// discover their domains): no subscriber goroutine is woken.
func BenchmarkFanoutFiltered(b *testing.B) {
	for _, n := range []int{1, 10, 100, 1000} {
		b.Run("subs="+strconv.Itoa(n), func(b *testing.B) {
			s := New[int](0)
			decline := func(int) (bool, string) { return false, "serves none" }
			for i := range n {
				if err := s.ConnectFiltered(fmt.Sprint("app", i), time.Minute, decline, func(context.Context, int) (Status, string) {
					return OK, ""
				}); err != nil {
					b.Fatal(err)
				}
			}
			emitAndWait(b, s)
		})
	}
}

// emitAndWait times one Emit and the Wait for its results, and closes s
// when the benchmark ends.
func emitAndWait(b *testing.B, s *Signal[int]) {
	b.Cleanup(func() { _ = s.Close(context.Background()) })
	ctx := context.Background()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		id := strconv.Itoa(i)
		i++
		if err := s.Emit(id, i); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Wait(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}
