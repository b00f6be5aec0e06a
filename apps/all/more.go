package all

import (
	_ "github.com/certbus/certbus/apps/coturn"     // coturn: copy, SIGUSR2
	_ "github.com/certbus/certbus/apps/dovecot"    // dovecot: copy, doveadm reload
	_ "github.com/certbus/certbus/apps/haproxy"    // HAProxy: runtime API
	_ "github.com/certbus/certbus/apps/nginx"      // nginx: lineage, nginx -t, reload
	_ "github.com/certbus/certbus/apps/postfix"    // Postfix: key+chain file, postfix reload
	_ "github.com/certbus/certbus/apps/postgresql" // PostgreSQL: ssl_cert_file, reload
	_ "github.com/certbus/certbus/apps/signal"     // generic: signal to a PID file's process
)
