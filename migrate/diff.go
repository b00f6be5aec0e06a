package migrate

import (
	"fmt"
	"strings"
)

// diffContext is the number of unchanged lines around each change, as in
// diff -u.
const diffContext = 3

// unifiedDiff renders, in unified format, the edit that deletes the lines
// marked in removed. migrate only ever deletes whole lines, so the edit is
// known exactly and no longest-common-subsequence search is needed.
func unifiedDiff(oldName, newName string, data []byte, lines []physLine, removed []bool) string {
	var b strings.Builder
	// newBefore[i] is the number of kept lines before line i.
	newBefore := make([]int, len(lines)+1)
	for i := range lines {
		newBefore[i+1] = newBefore[i]
		if !removed[i] {
			newBefore[i+1]++
		}
	}
	for i := 0; i < len(lines); {
		if !removed[i] {
			i++
			continue
		}
		// A hunk runs from diffContext lines before this deletion to
		// diffContext lines after the last deletion it absorbs; deletions
		// closer than 2*diffContext kept lines apart share a hunk.
		start := max(0, i-diffContext)
		end := i
		for j := i; j < len(lines); j++ {
			if removed[j] {
				end = j + 1
			} else if j-end >= 2*diffContext {
				break
			}
		}
		end = min(len(lines), end+diffContext)
		if b.Len() == 0 {
			fmt.Fprintf(&b, "--- %s\n+++ %s\n", oldName, newName)
		}
		fmt.Fprintf(&b, "@@ -%s +%s @@\n", hunkRange(start, end-start), hunkRange(newBefore[start], newBefore[end]-newBefore[start]))
		for j := start; j < end; j++ {
			prefix := " "
			if removed[j] {
				prefix = "-"
			}
			text := string(data[lines[j].start:lines[j].end])
			b.WriteString(prefix)
			b.WriteString(text)
			if !strings.HasSuffix(text, "\n") {
				b.WriteString("\n\\ No newline at end of file\n")
			}
		}
		i = end
	}
	return b.String()
}

// hunkRange formats the 0-based start and count of a hunk side: "l,n", or
// "l" for one line; an empty side names the line before it.
func hunkRange(start, count int) string {
	switch count {
	case 0:
		return fmt.Sprintf("%d,0", start)
	case 1:
		return fmt.Sprintf("%d", start+1)
	}
	return fmt.Sprintf("%d,%d", start+1, count)
}
