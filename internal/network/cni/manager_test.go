package cni

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	v1 "berth.dev/berth/api/v1"
)

// Each test has its own /20 of 10.250.0.0/16 so none can clash with another
// or with a real server's default pool (10.89.0.0/16).

func TestAttachReachableFromHostAndSurvivesRestart(t *testing.T) {
	cfg := testConfig(t, "10.250.0.0/20")
	ctx := t.Context()
	m := newManager(t, cfg)

	// "default" works with no EnsureEnvironment call first.
	a, err := m.Attach(ctx, "inst-a", "default")
	if err != nil {
		t.Fatalf("Attach a: %v", err)
	}
	b, err := m.Attach(ctx, "inst-b", "default")
	if err != nil {
		t.Fatalf("Attach b: %v", err)
	}
	subnet, gw, bridge, err := m.EnsureEnvironment(ctx, "default")
	if err != nil {
		t.Fatalf("EnsureEnvironment: %v", err)
	}
	if subnet.String() != "10.250.0.0/24" || !gw.Equal(net.IPv4(10, 250, 0, 1)) || bridge != cfg.BridgePrefix+"0" {
		t.Fatalf("default network = %s gw %s bridge %s, want 10.250.0.0/24 gw 10.250.0.1 bridge %s0", subnet, gw, bridge, cfg.BridgePrefix)
	}
	if a.IP.Equal(b.IP) {
		t.Fatalf("both instances got %s", a.IP)
	}
	for _, att := range []struct {
		name string
		ip   net.IP
		gw   net.IP
		ns   string
	}{{"inst-a", a.IP, a.Gateway, a.NetNSPath}, {"inst-b", b.IP, b.Gateway, b.NetNSPath}} {
		if !subnet.Contains(att.ip) || att.ip.Equal(gw) {
			t.Errorf("%s: IP %s not a host address of %s", att.name, att.ip, subnet)
		}
		if !att.gw.Equal(gw) {
			t.Errorf("%s: gateway %s, want %s", att.name, att.gw, gw)
		}
		if att.ns != filepath.Join(cfg.DataDir, "netns", att.name) || !isNetNS(att.ns) {
			t.Errorf("%s: namespace %q is not a mounted namespace under the data dir", att.name, att.ns)
		}
		port := serveIn(t, att.ns, att.name)
		got, err := dialFromHost(att.ip, port)
		if err != nil || got != att.name {
			t.Errorf("host → %s:%d = %q, %v; want %q", att.ip, port, got, err, att.name)
		}
	}

	again, err := m.Attach(ctx, "inst-a", "default")
	if err != nil || !again.IP.Equal(a.IP) || again.NetNSPath != a.NetNSPath {
		t.Errorf("second Attach = %+v, %v; want the first attachment %+v", again, err, a)
	}
	if _, err := m.Attach(ctx, "inst-a", "staging"); !v1.IsConflict(err) {
		t.Errorf("Attach in another environment: err = %v, want Conflict", err)
	}

	// A restarted server finds the attachment and can undo it.
	m2 := newManager(t, cfg)
	got, err := m2.Lookup(ctx, "inst-a", "default")
	if err != nil || !got.IP.Equal(a.IP) || got.NetNSPath != a.NetNSPath {
		t.Fatalf("Lookup after restart = %+v, %v; want %+v", got, err, a)
	}
	if again, err := m2.Attach(ctx, "inst-a", "default"); err != nil || !again.IP.Equal(a.IP) {
		t.Errorf("Attach after restart = %+v, %v; want existing %s", again, err, a.IP)
	}
	if err := m2.Detach(ctx, "inst-a", "default"); err != nil {
		t.Fatalf("Detach after restart: %v", err)
	}
	if _, err := os.Lstat(a.NetNSPath); !os.IsNotExist(err) {
		t.Errorf("namespace file still there after Detach: %v", err)
	}
	if _, err := m2.Lookup(ctx, "inst-a", "default"); !v1.IsNotFound(err) {
		t.Errorf("Lookup after Detach: err = %v, want NotFound", err)
	}
	// host-local keeps one file per leased IP; the lease must be gone.
	lease := filepath.Join(cfg.DataDir, "cni", "ipam", cfg.BridgePrefix+"-default", a.IP.String())
	if _, err := os.Stat(lease); !os.IsNotExist(err) {
		t.Errorf("IP %s still leased after Detach (%s): %v", a.IP, lease, err)
	}
	if err := m2.Detach(ctx, "inst-a", "default"); err != nil {
		t.Errorf("second Detach: %v, want nil", err)
	}
	// The other instance is untouched.
	if got, err := m2.Lookup(ctx, "inst-b", "default"); err != nil || !got.IP.Equal(b.IP) {
		t.Errorf("Lookup inst-b = %+v, %v", got, err)
	}
}

func TestEnvironmentsGetDistinctPersistentSubnets(t *testing.T) {
	cfg := testConfig(t, "10.250.16.0/20")
	ctx := t.Context()
	m := newManager(t, cfg)
	_, pool, _ := net.ParseCIDR(cfg.SubnetPool)

	type envNetwork struct {
		subnet *net.IPNet
		gw     net.IP
		bridge string
	}
	ensure := func(m *Manager, env string) envNetwork {
		t.Helper()
		s, gw, br, err := m.EnsureEnvironment(ctx, env)
		if err != nil {
			t.Fatalf("EnsureEnvironment(%s): %v", env, err)
		}
		return envNetwork{s, gw, br}
	}
	def, staging := ensure(m, "default"), ensure(m, "staging")
	if def.subnet.Contains(staging.subnet.IP) || staging.subnet.Contains(def.subnet.IP) {
		t.Fatalf("subnets overlap: %s and %s", def.subnet, staging.subnet)
	}
	if def.bridge == staging.bridge {
		t.Fatalf("both environments on bridge %s", def.bridge)
	}
	for _, n := range []envNetwork{def, staging} {
		if !pool.Contains(n.subnet.IP) || len(n.bridge) > 15 {
			t.Errorf("%+v: outside pool %s or bridge name too long", n, pool)
		}
		link, err := netlink.LinkByName(n.bridge)
		if err != nil {
			t.Fatalf("bridge %s not created: %v", n.bridge, err)
		}
		addrs, _ := netlink.AddrList(link, netlink.FAMILY_V4)
		if len(addrs) != 1 || !addrs[0].IP.Equal(n.gw) {
			t.Errorf("bridge %s addresses %v, want only gateway %s", n.bridge, addrs, n.gw)
		}
	}

	// Another Manager on the same data dir sees the same allocation, and
	// allocates around it.
	m2 := newManager(t, cfg)
	if got := ensure(m2, "staging"); got.subnet.String() != staging.subnet.String() || got.bridge != staging.bridge {
		t.Errorf("after restart staging = %+v, want %+v", got, staging)
	}
	qa := ensure(m2, "qa")
	for _, n := range []envNetwork{def, staging} {
		if n.subnet.String() == qa.subnet.String() || n.bridge == qa.bridge {
			t.Errorf("qa %+v reuses %+v", qa, n)
		}
	}

	// Removing an environment frees its subnet and bridge, but not while
	// something is attached.
	if _, err := m2.Attach(ctx, "qa-1", "qa"); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if err := m2.RemoveEnvironment(ctx, "qa"); !v1.IsConflict(err) {
		t.Errorf("RemoveEnvironment with an attachment: err = %v, want Conflict", err)
	}
	if err := m2.Detach(ctx, "qa-1", "qa"); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	if err := m2.RemoveEnvironment(ctx, "qa"); err != nil {
		t.Fatalf("RemoveEnvironment: %v", err)
	}
	if _, err := netlink.LinkByName(qa.bridge); err == nil {
		t.Errorf("bridge %s still exists after RemoveEnvironment", qa.bridge)
	}
	if got := ensure(m2, "uat"); got.subnet.String() != qa.subnet.String() {
		t.Errorf("uat got %s, want the freed %s", got.subnet, qa.subnet)
	}
}

func TestInvalidInput(t *testing.T) {
	cfg := testConfig(t, "10.250.32.0/20")
	ctx := t.Context()
	m := newManager(t, cfg)
	for _, tc := range []struct{ id, env string }{
		{"", "default"},
		{"../etc", "default"},
		{"a/b", "default"},
		{strings.Repeat("x", 129), "default"},
		{"ok", ""},
		{"ok", "Bad_Env"},
		{"ok", "-lead"},
	} {
		if _, err := m.Attach(ctx, tc.id, tc.env); !v1.IsInvalid(err) {
			t.Errorf("Attach(%q, %q): err = %v, want Invalid", tc.id, tc.env, err)
		}
	}
	if _, err := m.Lookup(ctx, "nothing", "default"); !v1.IsNotFound(err) {
		t.Errorf("Lookup of unknown id: err = %v, want NotFound", err)
	}
	if err := m.Detach(ctx, "nothing", "default"); err != nil {
		t.Errorf("Detach of unknown id: %v, want nil", err)
	}
	for _, bad := range []Config{
		{DataDir: ""},
		{DataDir: cfg.DataDir, SubnetPool: "nonsense"},
		{DataDir: cfg.DataDir, SubnetPool: "10.0.0.0/25"},
		{DataDir: cfg.DataDir, SubnetPool: "fd00::/64"},
		{DataDir: cfg.DataDir, BridgePrefix: "Has-Dash"},
		{DataDir: cfg.DataDir, PluginDirs: []string{t.TempDir()}},
	} {
		if _, err := New(ctx, bad); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", bad)
		}
	}
	// Changing the pool under existing allocations would hand out
	// overlapping subnets; refuse.
	if _, _, _, err := m.EnsureEnvironment(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	changed := cfg
	changed.SubnetPool = "10.250.48.0/20"
	if _, err := New(ctx, changed); !v1.IsConflict(err) {
		t.Errorf("New with a different pool: err = %v, want Conflict", err)
	}
}

func TestGCDetachesWhatIsNotKept(t *testing.T) {
	cfg := testConfig(t, "10.250.64.0/20")
	ctx := t.Context()
	m := newManager(t, cfg)
	for _, id := range []string{"keep-1", "leak-1", "leak-2"} {
		if _, err := m.Attach(ctx, id, "default"); err != nil {
			t.Fatalf("Attach %s: %v", id, err)
		}
	}
	// A namespace with no record, as a crash mid-Attach leaves it.
	debris := m.netnsPath("crashed")
	if err := createNetNS(debris); err != nil {
		t.Fatal(err)
	}

	m2 := newManager(t, cfg)
	if err := m2.GC(ctx, func(id string) bool { return id == "keep-1" }); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if _, err := m2.Lookup(ctx, "keep-1", "default"); err != nil {
		t.Errorf("kept attachment gone: %v", err)
	}
	for _, id := range []string{"leak-1", "leak-2"} {
		if _, err := m2.Lookup(ctx, id, "default"); !v1.IsNotFound(err) {
			t.Errorf("Lookup %s after GC: err = %v, want NotFound", id, err)
		}
	}
	entries, _ := os.ReadDir(m2.netnsDir())
	if len(entries) != 1 || entries[0].Name() != "keep-1" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("namespaces after GC = %v, want [keep-1]", names)
	}
}

func TestParallelAttachInOneEnvironment(t *testing.T) {
	cfg := testConfig(t, "10.250.80.0/20")
	ctx := t.Context()
	m := newManager(t, cfg)

	const n = 8
	ips := make([]net.IP, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			att, err := m.Attach(ctx, fmt.Sprintf("p-%d", i), "burst")
			ips[i], errs[i] = att.IP, err
		})
	}
	wg.Wait()
	seen := map[string]int{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Attach p-%d: %v", i, err)
		}
		if j, dup := seen[ips[i].String()]; dup {
			t.Fatalf("p-%d and p-%d both got %s", i, j, ips[i])
		}
		seen[ips[i].String()] = i
	}
	for i := range n {
		wg.Go(func() { errs[i] = m.Detach(ctx, fmt.Sprintf("p-%d", i), "burst") })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Detach p-%d: %v", i, err)
		}
	}
}

func TestEnvironmentsAreIsolated(t *testing.T) {
	cfg := testConfig(t, "10.250.96.0/20")
	ctx := t.Context()
	m := newManager(t, cfg)
	attach := func(id, env string) (net.IP, string) {
		t.Helper()
		att, err := m.Attach(ctx, id, env)
		if err != nil {
			t.Fatalf("Attach %s: %v", id, err)
		}
		return att.IP, att.NetNSPath
	}
	_, a1 := attach("a1", "alpha")
	a2IP, a2 := attach("a2", "alpha")
	b1IP, b1 := attach("b1", "beta")
	a2Port, b1Port := serveIn(t, a2, "a2"), serveIn(t, b1, "b1")

	if got, err := dialFromNetNS(a1, a2IP, a2Port, 3*time.Second); err != nil || got != "a2" {
		t.Errorf("a1 → a2 (same environment) = %q, %v; want a2", got, err)
	}
	if got, err := dialFromHost(b1IP, b1Port); err != nil || got != "b1" {
		t.Errorf("host → b1 = %q, %v; want b1", got, err)
	}
	if got, err := dialFromNetNS(a1, b1IP, b1Port, time.Second); err == nil {
		t.Errorf("a1 (alpha) → b1 (beta) connected and read %q; environments must be isolated", got)
	}

	// Without the DROP the same connection goes through, so the rule, not
	// some accident of routing, is what isolates.
	wildcard := cfg.BridgePrefix + "+"
	drop := []string{"-t", "filter", "-D", m.isolationChain, "-i", wildcard, "-o", wildcard, "-j", "DROP"}
	if err := m.iptables(ctx, drop...); err != nil {
		t.Fatal(err)
	}
	got, err := dialFromNetNS(a1, b1IP, b1Port, 3*time.Second)
	_, _, betaBridge, _ := m.EnsureEnvironment(ctx, "beta")
	if rerr := m.ensureIsolation(ctx, betaBridge); rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil || got != "b1" {
		t.Errorf("a1 → b1 without the isolation rule = %q, %v; want b1 (test cannot tell the rule works)", got, err)
	}
}

func TestAttachDetachLatency(t *testing.T) {
	cfg := testConfig(t, "10.250.112.0/20")
	ctx := t.Context()
	m := newManager(t, cfg)
	// Warm the environment so the figures are of the steady state.
	if _, err := m.Attach(ctx, "warm", "default"); err != nil {
		t.Fatal(err)
	}
	const rounds = 20
	var attach, detach []time.Duration
	for i := range rounds {
		id := fmt.Sprintf("lat-%d", i)
		start := time.Now()
		if _, err := m.Attach(ctx, id, "default"); err != nil {
			t.Fatalf("Attach %s: %v", id, err)
		}
		attach = append(attach, time.Since(start))
		start = time.Now()
		if err := m.Detach(ctx, id, "default"); err != nil {
			t.Fatalf("Detach %s: %v", id, err)
		}
		detach = append(detach, time.Since(start))
	}
	t.Logf("over %d rounds: Attach p50 %v, Detach p50 %v", rounds, median(attach).Round(time.Millisecond), median(detach).Round(time.Millisecond))
}

func TestReattachAfterNamespaceLost(t *testing.T) {
	cfg := testConfig(t, "10.250.128.0/20")
	ctx := t.Context()
	m := newManager(t, cfg)
	first, err := m.Attach(ctx, "r1", "default")
	if err != nil {
		t.Fatal(err)
	}
	// A reboot drops the namespace mount but leaves the record and the IP
	// lease on disk.
	if err := removeNetNS(first.NetNSPath); err != nil {
		t.Fatal(err)
	}

	m2 := newManager(t, cfg)
	again, err := m2.Attach(ctx, "r1", "default")
	if err != nil {
		t.Fatalf("Attach after the namespace was lost: %v", err)
	}
	if !isNetNS(again.NetNSPath) {
		t.Fatalf("re-attach left %s without a namespace", again.NetNSPath)
	}
	port := serveIn(t, again.NetNSPath, "r1")
	if got, err := dialFromHost(again.IP, port); err != nil || got != "r1" {
		t.Errorf("host → re-attached r1 = %q, %v", got, err)
	}
	leases, _ := os.ReadDir(filepath.Join(cfg.DataDir, "cni", "ipam", cfg.BridgePrefix+"-default"))
	var ips []string
	for _, l := range leases {
		if net.ParseIP(l.Name()) != nil {
			ips = append(ips, l.Name())
		}
	}
	if len(ips) != 1 || ips[0] != again.IP.String() {
		t.Errorf("leases after re-attach = %v, want only %s (the old lease must be released)", ips, again.IP)
	}
}

// A bridge takes its ports' lowest MAC unless it has its own; if it
// changed when an instance went away, every other instance's ARP entry for
// the gateway would go stale and its traffic stall for seconds (seen as
// 3-second requests taking 9 during a scale-down).
func TestBridgeMACSurvivesDetach(t *testing.T) {
	cfg := testConfig(t, "10.250.144.0/20")
	ctx := t.Context()
	m := newManager(t, cfg)
	for _, id := range []string{"mac-a", "mac-b", "mac-c"} {
		if _, err := m.Attach(ctx, id, "mac"); err != nil {
			t.Fatal(err)
		}
	}
	_, _, bridge, err := m.EnsureEnvironment(ctx, "mac")
	if err != nil {
		t.Fatal(err)
	}
	macOf := func() string {
		l, err := netlink.LinkByName(bridge)
		if err != nil {
			t.Fatal(err)
		}
		return l.Attrs().HardwareAddr.String()
	}
	before := macOf()
	for _, id := range []string{"mac-a", "mac-b"} {
		if err := m.Detach(ctx, id, "mac"); err != nil {
			t.Fatal(err)
		}
		if got := macOf(); got != before {
			t.Fatalf("bridge MAC changed from %s to %s when %s was detached", before, got, id)
		}
	}
	m.Detach(ctx, "mac-c", "mac")
}

// The firewall plugin's CNI-FORWARD chain is shared by every CNI user on
// the host; one that deletes it between the plugin's check that it exists
// and its use fails the plugin's ADD ("Chain 'CNI-FORWARD' does not
// exist"), as seen when a test's cleanup ran beside another package's
// servers. Such an ADD must not fail the instance: Attach undoes it and
// tries again. The plugin here is the real one, failing its first ADD.
func TestAttachRetriesAPluginThatFailedOnce(t *testing.T) {
	plugins := flakyFirewall(t, 1)
	cfg := testConfig(t, "10.250.176.0/20")
	cfg.PluginDirs = []string{plugins}
	ctx := t.Context()
	m := newManager(t, cfg)

	att, err := m.Attach(ctx, "retried", "default")
	if err != nil {
		t.Fatalf("Attach after one transient plugin failure: %v", err)
	}
	if n := firewallFailures(t, plugins); n != 1 {
		t.Fatalf("the firewall plugin failed %d times, want 1", n)
	}
	port := serveIn(t, att.NetNSPath, "retried")
	if got, err := dialFromHost(att.IP, port); err != nil || got != "retried" {
		t.Fatalf("host → %s:%d = %q, %v; want the retried instance", att.IP, port, got, err)
	}
	// The failed try left nothing behind: one namespace, one address.
	entries, _ := os.ReadDir(m.netnsDir())
	if len(entries) != 1 || entries[0].Name() != "retried" {
		t.Errorf("namespaces = %v, want [retried]", entries)
	}
	if got := leasedIPs(t, cfg, "default"); len(got) != 1 || got[0] != att.IP.String() {
		t.Errorf("addresses leased = %v, want [%s]", got, att.IP)
	}
	if err := m.Detach(ctx, "retried", "default"); err != nil {
		t.Fatalf("Detach: %v", err)
	}
}

// A plugin that keeps failing still fails the Attach, with its error, and
// leaves neither a namespace nor an address behind.
func TestAttachGivesUpOnAPluginThatKeepsFailing(t *testing.T) {
	plugins := flakyFirewall(t, 1000)
	cfg := testConfig(t, "10.250.192.0/20")
	cfg.PluginDirs = []string{plugins}
	ctx := t.Context()
	m := newManager(t, cfg)

	_, err := m.Attach(ctx, "doomed", "default")
	if err == nil || !strings.Contains(err.Error(), "CNI-FORWARD") {
		t.Fatalf("Attach = %v, want the plugin's error", err)
	}
	if n := firewallFailures(t, plugins); n != attachAttempts {
		t.Errorf("the firewall plugin ran %d times, want %d", n, attachAttempts)
	}
	if entries, _ := os.ReadDir(m.netnsDir()); len(entries) != 0 {
		t.Errorf("namespaces left: %v", entries)
	}
	if _, err := m.Lookup(ctx, "doomed", "default"); !v1.IsNotFound(err) {
		t.Errorf("Lookup after a failed Attach: %v, want NotFound", err)
	}
	if got := leasedIPs(t, cfg, "default"); len(got) != 0 {
		t.Errorf("addresses still leased: %v", got)
	}
}

// leasedIPs lists the addresses host-local holds in env's network: one
// file per address, named after it.
func leasedIPs(t *testing.T, cfg Config, env string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(cfg.DataDir, "cni", "ipam", cfg.BridgePrefix+"-"+env))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var ips []string
	for _, e := range entries {
		if net.ParseIP(e.Name()) != nil {
			ips = append(ips, e.Name())
		}
	}
	return ips
}

// flakyFirewall returns a plugin directory holding the host's plugins,
// whose firewall fails its first n ADDs the way the real one does when
// CNI-FORWARD vanishes under it, then runs the real one. Each failure
// leaves a file "failed.N" in the directory.
func flakyFirewall(t *testing.T, n int) string {
	t.Helper()
	requireHost(t)
	dir := t.TempDir()
	for _, p := range requiredPlugins {
		real, err := findPlugin(defaultPluginDirs, p)
		if err != nil {
			t.Fatal(err)
		}
		if p != "firewall" {
			if err := os.Symlink(real, filepath.Join(dir, p)); err != nil {
				t.Fatal(err)
			}
			continue
		}
		script := fmt.Sprintf(`#!/bin/sh
if [ "$CNI_COMMAND" = ADD ]; then
	i=1
	while [ $i -le %d ]; do
		if mkdir "%[2]s/failed.$i" 2>/dev/null; then
			echo '{"cniVersion":"1.0.0","code":999,"msg":"running [iptables -t filter -C FORWARD -m comment --comment CNI firewall plugin rules -j CNI-FORWARD --wait]: exit status 2: iptables v1.8.9 (nf_tables): Chain CNI-FORWARD does not exist"}'
			exit 1
		fi
		i=$((i+1))
	done
fi
exec %[3]s
`, n, dir, real)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func firewallFailures(t *testing.T, dir string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "failed.*"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

// A server killed while the CNI plugins ran for an instance leaves what
// they made after it died: a namespace with no record, and an address and
// a masquerade rule that libcni never cached, as it caches a result only
// once every plugin returned. The restarted server attaches the same
// instance again, and detaching it later must undo everything: a rule of
// the first attachment still jumping to the id's masquerade chain made the
// plugin's DEL fail ("CHAIN_DEL failed (Device or resource busy)"), and
// the instance's namespace stayed mounted.
func TestDetachAfterAKilledAttach(t *testing.T) {
	cfg := testConfig(t, "10.250.208.0/20")
	ctx := t.Context()
	m := newManager(t, cfg)
	const id = "default.killed"
	first, err := m.Attach(ctx, id, "default")
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	// What the killed server never wrote: the record and libcni's cache.
	if err := os.Remove(m.recordPath(id)); err != nil {
		t.Fatal(err)
	}
	cached, _ := filepath.Glob(filepath.Join(m.cacheDir(), "results", "*-"+id+"-*"))
	if len(cached) == 0 {
		t.Fatal("no libcni cache to remove: the test no longer matches libcni")
	}
	for _, f := range cached {
		os.Remove(f)
	}

	m2 := newManager(t, cfg)
	second, err := m2.Attach(ctx, id, "default")
	if err != nil {
		t.Fatalf("Attach after the restart: %v", err)
	}
	// The first attachment's address, rules and lease went with its
	// debris; the address may be given again.
	if !second.IP.Equal(first.IP) {
		if rules := hostRulesFor(t, first.IP); len(rules) > 0 {
			t.Errorf("rules of the killed attachment left:\n%s", strings.Join(rules, "\n"))
		}
		if got := leasedIPs(t, cfg, "default"); len(got) != 1 || got[0] != second.IP.String() {
			t.Errorf("addresses leased = %v, want [%s]", got, second.IP)
		}
	}
	port := serveIn(t, second.NetNSPath, "again")
	if got, err := dialFromHost(second.IP, port); err != nil || got != "again" {
		t.Fatalf("host → %s:%d = %q, %v", second.IP, port, got, err)
	}
	if err := m2.Detach(ctx, id, "default"); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	if isNetNS(second.NetNSPath) {
		t.Errorf("namespace %s still mounted", second.NetNSPath)
	}
	for _, ip := range []net.IP{first.IP, second.IP} {
		if rules := hostRulesFor(t, ip); len(rules) > 0 {
			t.Errorf("rules of the detached instance left:\n%s", strings.Join(rules, "\n"))
		}
	}
}

// hostRulesFor lists the rules that name ip in the firewall plugin's
// chain and in nat POSTROUTING.
func hostRulesFor(t *testing.T, ip net.IP) []string {
	t.Helper()
	var found []string
	for _, args := range [][]string{{"-S", "CNI-FORWARD"}, {"-t", "nat", "-S", "POSTROUTING"}} {
		out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).Output()
		if err != nil {
			t.Fatalf("iptables %v: %v", args, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, " "+ip.String()+"/32 ") {
				found = append(found, line)
			}
		}
	}
	return found
}
