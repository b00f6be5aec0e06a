// Package all links every built-in app type into the binary.
package all

import (
	_ "github.com/certbus/certbus/apps/service" // generic copy + reload
)
