// Package all links every built-in app type into the binary.
package all

import (
	_ "github.com/certbus/certbus/apps/apache"        // Apache httpd
	_ "github.com/certbus/certbus/apps/ejabberd"      // ejabberd
	_ "github.com/certbus/certbus/apps/matrixsynapse" // Matrix Synapse
	_ "github.com/certbus/certbus/apps/service"       // generic copy + reload
)
