package apps_test

import (
	"os"
	"syscall"
)

func statUID(st os.FileInfo) int { return int(st.Sys().(*syscall.Stat_t).Uid) }
