package bus

// introspection is the object's interface as busctl and gdbus show it.
const introspection = `<node>
  <interface name="org.certbus.Dispatcher1">
    <!-- Notify: record a certbot (or other ACME client) hook event.
         operation: pre, post or deploy.
         domains: domain -> {certificate, private_key, fullchain, chain, lineage} (absolute paths).
         Returns once the event is validated and durably journaled. -->
    <method name="Notify">
      <arg name="operation" type="s" direction="in"/>
      <arg name="domains" type="a{sa{ss}}" direction="in"/>
      <arg name="event_id" type="s" direction="out"/>
    </method>
    <!-- Wait: one (app, status, message) per app once the event is processed;
         status is ok, skipped, failed or pending. -->
    <method name="Wait">
      <arg name="event_id" type="s" direction="in"/>
      <arg name="timeout_ms" type="u" direction="in"/>
      <arg name="results" type="a(sss)" direction="out"/>
    </method>
    <signal name="CertificateEvent">
      <arg name="event_id" type="s"/>
      <arg name="operation" type="s"/>
      <arg name="domains" type="a{sa{ss}}"/>
    </signal>
  </interface>
  <interface name="org.freedesktop.DBus.Introspectable">
    <method name="Introspect">
      <arg name="xml_data" type="s" direction="out"/>
    </method>
  </interface>
  <interface name="org.freedesktop.DBus.Peer">
    <method name="Ping"/>
    <method name="GetMachineId">
      <arg name="machine_uuid" type="s" direction="out"/>
    </method>
  </interface>
</node>`
