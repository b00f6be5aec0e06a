package migrate

import (
	"strings"
	"testing"
)

func TestUnifiedDiff(t *testing.T) {
	numbered := func(n int) string {
		var b strings.Builder
		for i := 1; i <= n; i++ {
			b.WriteString(strings.Repeat("x", i) + "\n")
		}
		return b.String()
	}
	for _, tc := range []struct {
		name string
		in   string
		drop []int // 1-based
		want string
	}{
		{name: "nothing", in: "a\nb\n", want: ""},
		{
			name: "middle", in: numbered(9), drop: []int{5},
			want: "--- old\n+++ new\n@@ -2,7 +2,6 @@\n xx\n xxx\n xxxx\n-xxxxx\n xxxxxx\n xxxxxxx\n xxxxxxxx\n",
		},
		{
			name: "first and last", in: "a\nb\n", drop: []int{1, 2},
			want: "--- old\n+++ new\n@@ -1,2 +0,0 @@\n-a\n-b\n",
		},
		{
			name: "one line file", in: "a\n", drop: []int{1},
			want: "--- old\n+++ new\n@@ -1 +0,0 @@\n-a\n",
		},
		{
			name: "close deletions share a hunk", in: numbered(12), drop: []int{2, 9},
			want: "--- old\n+++ new\n@@ -1,12 +1,10 @@\n x\n-xx\n xxx\n xxxx\n xxxxx\n xxxxxx\n xxxxxxx\n xxxxxxxx\n-xxxxxxxxx\n xxxxxxxxxx\n xxxxxxxxxxx\n xxxxxxxxxxxx\n",
		},
		{
			name: "far deletions get two hunks", in: numbered(12), drop: []int{1, 12},
			want: "--- old\n+++ new\n@@ -1,4 +1,3 @@\n-x\n xx\n xxx\n xxxx\n@@ -9,4 +8,3 @@\n xxxxxxxxx\n xxxxxxxxxx\n xxxxxxxxxxx\n-xxxxxxxxxxxx\n",
		},
		{
			name: "removed last line without newline", in: "a\nb", drop: []int{2},
			want: "--- old\n+++ new\n@@ -1,2 +1 @@\n a\n-b\n\\ No newline at end of file\n",
		},
		{
			name: "kept last line without newline", in: "a\nb", drop: []int{1},
			want: "--- old\n+++ new\n@@ -1,2 +1 @@\n-a\n b\n\\ No newline at end of file\n",
		},
		{
			name: "CRLF kept as is", in: "a\r\nb\r\n", drop: []int{1},
			want: "--- old\n+++ new\n@@ -1,2 +1 @@\n-a\r\n b\r\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := splitLines([]byte(tc.in))
			drop := make([]bool, len(lines))
			for _, n := range tc.drop {
				drop[n-1] = true
			}
			if got := unifiedDiff("old", "new", []byte(tc.in), lines, drop); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}
