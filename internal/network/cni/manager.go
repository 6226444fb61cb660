package cni

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containernetworking/cni/libcni"
	cnitypes "github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	v1 "berth.dev/berth/api/v1"
	"berth.dev/berth/internal/backoff"
	"berth.dev/berth/internal/network"
)

var _ network.Manager = (*Manager)(nil)

// cniVersion is the newest spec Debian's plugins (1.1.x) speak.
const cniVersion = "1.0.0"

// Config configures a Manager.
type Config struct {
	// DataDir holds everything the manager persists: the subnet allocation,
	// attachment records, namespace files, IPAM and CNI cache state.
	DataDir string
	// PluginDirs are searched for the CNI plugin binaries.
	PluginDirs []string
	// SubnetPool is split into one /24 per environment.
	SubnetPool string
	// BridgePrefix names bridges (prefix + pool index), the CNI networks and
	// the isolation chain. Two managers on one host need prefixes where
	// neither is a prefix of the other, and disjoint pools.
	BridgePrefix string
	// Domain is the gateway's host suffix (NAME.ENV.Domain); instances get
	// ENV.Domain as their DNS search domain.
	Domain string
	Logger *slog.Logger
}

const (
	defaultSubnetPool   = "10.89.0.0/16"
	defaultBridgePrefix = "berth"
	defaultDomain       = "berth.localhost"
)

var defaultPluginDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// requiredPlugins are the plugin binaries every attachment runs.
var requiredPlugins = []string{"bridge", "host-local", "loopback", "firewall"}

var (
	idRE     = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)
	prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,9}$`)
)

// Manager attaches instances to per-environment CNI bridges. All its state
// lives under Config.DataDir, so a new Manager on the same directory picks up
// where a previous one (or a crashed server) left off.
type Manager struct {
	cfg            Config
	log            *slog.Logger
	cni            *libcni.CNIConfig
	loopback       *libcni.NetworkConfigList
	pool           *net.IPNet
	poolSize       int
	isolationChain string
	iptablesPath   string

	// ids serializes Attach/Detach of one id; different ids run in parallel.
	ids keyedMutex

	// mu guards alloc and ready.
	mu    sync.Mutex
	alloc allocationFile
	ready map[string]*envNet
	// subnets is alloc's subnets, republished on every change of alloc.
	subnets atomic.Pointer[map[string]netip.Prefix]

	// addMu lets attachments run CNI in parallel once an environment is warm
	// (bridge up, plugin iptables chains created); the first ADD of each
	// environment runs alone because the plugins' check-then-create of shared
	// chains is not safe to race.
	addMu sync.RWMutex
	warm  map[string]bool
	wmu   sync.Mutex
}

// New validates cfg, checks that the plugins and iptables are present, and
// loads the persisted subnet allocation. It does not touch the host network
// until the first environment is used.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.DataDir == "" {
		return nil, v1.FieldError("dataDir", "is required")
	}
	if len(cfg.PluginDirs) == 0 {
		cfg.PluginDirs = defaultPluginDirs
	}
	if cfg.SubnetPool == "" {
		cfg.SubnetPool = defaultSubnetPool
	}
	if cfg.BridgePrefix == "" {
		cfg.BridgePrefix = defaultBridgePrefix
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Domain = strings.ToLower(strings.Trim(cfg.Domain, ".")); cfg.Domain == "" {
		cfg.Domain = defaultDomain
	}
	if !prefixRE.MatchString(cfg.BridgePrefix) {
		return nil, v1.FieldError("bridgePrefix", "%q must be 1-10 lowercase letters and digits, starting with a letter", cfg.BridgePrefix)
	}
	ip, pool, err := net.ParseCIDR(cfg.SubnetPool)
	if err != nil || ip.To4() == nil {
		return nil, v1.FieldError("subnetPool", "%q is not an IPv4 CIDR", cfg.SubnetPool)
	}
	ones, _ := pool.Mask.Size()
	if ones > 24 || ones < 8 {
		return nil, v1.FieldError("subnetPool", "%q must be between /8 and /24 (each environment takes a /24)", cfg.SubnetPool)
	}
	poolSize := 1 << (24 - ones)
	if n := len(cfg.BridgePrefix) + len(fmt.Sprint(poolSize-1)); n > 15 {
		return nil, v1.FieldError("bridgePrefix", "%q is too long for a pool of %d subnets (bridge names are at most 15 characters)", cfg.BridgePrefix, poolSize)
	}

	for _, p := range requiredPlugins {
		if _, err := findPlugin(cfg.PluginDirs, p); err != nil {
			return nil, err
		}
	}
	iptablesPath, err := exec.LookPath("iptables")
	if err != nil {
		return nil, v1.Unavailable("iptables not found: the CNI plugins and environment isolation need it")
	}

	m := &Manager{
		cfg:            cfg,
		log:            cfg.Logger,
		pool:           pool,
		poolSize:       poolSize,
		isolationChain: strings.ToUpper(cfg.BridgePrefix) + "-ISOLATION",
		iptablesPath:   iptablesPath,
		ready:          make(map[string]*envNet),
		warm:           make(map[string]bool),
	}
	for _, dir := range []string{cfg.DataDir, m.netnsDir(), m.recordDir(), m.ipamDir(), m.cacheDir()} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("network data dir: %w", err)
		}
	}
	m.cni = libcni.NewCNIConfigWithCacheDir(cfg.PluginDirs, m.cacheDir(), nil)
	m.loopback, err = libcni.NetworkConfFromBytes([]byte(`{"cniVersion":"` + cniVersion +
		`","name":"` + cfg.BridgePrefix + `-loopback","plugins":[{"type":"loopback"}]}`))
	if err != nil {
		return nil, err
	}

	ok, err := readJSON(m.allocPath(), &m.alloc)
	if err != nil {
		return nil, fmt.Errorf("load environment subnets: %w", err)
	}
	if ok && m.alloc.Pool != pool.String() {
		return nil, v1.Conflict("subnet pool changed from %s to %s; environments already hold subnets of the old pool", m.alloc.Pool, pool)
	}
	m.alloc.Pool = pool.String()
	if m.alloc.Environments == nil {
		m.alloc.Environments = make(map[string]envAllocation)
	}
	m.publishSubnets()
	return m, nil
}

func findPlugin(dirs []string, name string) (string, error) {
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", v1.Unavailable("CNI plugin %q not found in %s (Debian: apt-get install containernetworking-plugins)",
		name, strings.Join(dirs, ", "))
}

func (m *Manager) allocPath() string { return filepath.Join(m.cfg.DataDir, "environments.json") }
func (m *Manager) netnsDir() string  { return filepath.Join(m.cfg.DataDir, "netns") }
func (m *Manager) recordDir() string { return filepath.Join(m.cfg.DataDir, "attachments") }
func (m *Manager) ipamDir() string   { return filepath.Join(m.cfg.DataDir, "cni", "ipam") }
func (m *Manager) cacheDir() string  { return filepath.Join(m.cfg.DataDir, "cni", "cache") }
func (m *Manager) netnsPath(id string) string {
	return filepath.Join(m.netnsDir(), id)
}
func (m *Manager) recordPath(id string) string {
	return filepath.Join(m.recordDir(), id+".json")
}

func validateID(id string) error {
	if !idRE.MatchString(id) {
		return v1.FieldError("id", "%q is not a valid instance id (letters, digits, '_', '.', '-'; at most 128)", id)
	}
	return nil
}

func (m *Manager) attachment(r *record) network.Attachment {
	return network.Attachment{
		NetNSPath: r.NetNSPath,
		IP:        net.ParseIP(r.IP).To4(),
		Gateway:   net.ParseIP(r.Gateway).To4(),
		// The environment's DNS listens on the bridge's own address.
		DNS: network.DNSConfig{
			Nameservers: []string{r.Gateway},
			Search:      []string{r.Environment + "." + m.cfg.Domain},
		},
	}
}

func (m *Manager) readRecord(id string) (*record, error) {
	var r record
	ok, err := readJSON(m.recordPath(id), &r)
	if err != nil || !ok {
		return nil, err
	}
	return &r, nil
}

// records lists every persisted attachment.
func (m *Manager) records() ([]*record, error) {
	entries, err := os.ReadDir(m.recordDir())
	if err != nil {
		return nil, fmt.Errorf("list attachments: %w", err)
	}
	var out []*record
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(id, ".") {
			continue
		}
		r, err := m.readRecord(id)
		if err != nil {
			return nil, err
		}
		if r != nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// Attach implements network.Manager.
func (m *Manager) Attach(ctx context.Context, id, environment string) (network.Attachment, error) {
	if err := validateID(id); err != nil {
		return network.Attachment{}, err
	}
	if err := validateEnvironment(environment); err != nil {
		return network.Attachment{}, err
	}
	unlock := m.ids.lock(id)
	defer unlock()

	r, err := m.readRecord(id)
	if err != nil {
		return network.Attachment{}, err
	}
	if r != nil {
		if r.Environment != environment {
			return network.Attachment{}, v1.Conflict("instance %q is attached to environment %q, not %q", id, r.Environment, environment)
		}
		if isNetNS(r.NetNSPath) {
			return m.attachment(r), nil
		}
		// The record outlived its namespace (a reboot): redo the attachment
		// so the instance gets a working network, releasing the old IP first.
		m.log.Warn("attachment lost its namespace, re-attaching", "id", id, "environment", environment)
		if err := m.detach(ctx, r); err != nil {
			return network.Attachment{}, err
		}
	}

	n, err := m.ensureEnv(ctx, environment)
	if err != nil {
		return network.Attachment{}, err
	}
	nsPath := m.netnsPath(id)
	retry := backoff.Backoff{Base: 100 * time.Millisecond}
	for attempt := 1; ; attempt++ {
		rec, err := m.attachOnce(ctx, n, id, nsPath)
		if err == nil {
			m.log.Debug("attached", "id", id, "environment", environment, "ip", rec.IP)
			return m.attachment(rec), nil
		}
		err = fmt.Errorf("attach %q to environment %q: %w", id, environment, err)
		// A plugin that failed may have met host state another CNI user
		// was changing under it: the firewall plugin's CNI-FORWARD chain
		// is shared by every CNI user on the host, and one that deletes
		// it between the plugin's check and its use fails our ADD. The
		// attempt was undone, so trying again is safe, and a failure that
		// is not transient costs only the retries.
		var perr *cnitypes.Error
		if attempt == attachAttempts || !errors.As(err, &perr) {
			return network.Attachment{}, err
		}
		m.log.Warn("attach failed in a CNI plugin, retrying", "id", id, "environment", environment, "attempt", attempt, "error", err)
		if !retry.Wait(ctx) {
			return network.Attachment{}, err
		}
	}
}

// attachAttempts bounds the tries of one Attach whose plugins fail.
const attachAttempts = 3

// attachOnce makes id's namespace and runs CNI ADD in it, or undoes both
// when that fails; the caller holds id's lock.
func (m *Manager) attachOnce(ctx context.Context, n *envNet, id, nsPath string) (*record, error) {
	if _, err := os.Lstat(nsPath); err == nil {
		if err := m.removeDebris(ctx, id); err != nil {
			return nil, err
		}
	}
	if err := createNetNS(nsPath); err != nil {
		return nil, err
	}
	rec, err := m.cniAdd(ctx, n, id, nsPath)
	if err == nil {
		err = writeJSONAtomic(m.recordPath(id), rec)
	}
	if err != nil {
		// Undo with a context of our own: the caller's may be what failed us.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if derr := m.cniDel(cctx, n, id, nsPath); derr != nil {
			m.log.Warn("undo failed attachment", "id", id, "error", derr)
		}
		if derr := removeNetNS(nsPath); derr != nil {
			m.log.Warn("undo failed attachment", "id", id, "error", derr)
		}
		return nil, err
	}
	return rec, nil
}

func (m *Manager) runtimeConf(id, nsPath, ifName string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: nsPath, IfName: ifName}
}

func (m *Manager) cniAdd(ctx context.Context, n *envNet, id, nsPath string) (*record, error) {
	m.wmu.Lock()
	warm := m.warm[n.name]
	m.wmu.Unlock()
	if warm {
		m.addMu.RLock()
		defer m.addMu.RUnlock()
	} else {
		m.addMu.Lock()
		defer m.addMu.Unlock()
	}

	if _, err := m.cni.AddNetworkList(ctx, n.loopback, m.runtimeConf(id, nsPath, "lo")); err != nil {
		return nil, fmt.Errorf("loopback: %w", err)
	}
	res, err := m.cni.AddNetworkList(ctx, n.bridged, m.runtimeConf(id, nsPath, "eth0"))
	if err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("bridge result: %w", err)
	}
	rec := &record{ID: id, Environment: n.name, NetNSPath: nsPath, Gateway: n.gateway.String(), Bridge: n.bridge}
	for _, ipc := range r.IPs {
		if ip4 := ipc.Address.IP.To4(); ip4 != nil && n.subnet.Contains(ip4) {
			rec.IP = ip4.String()
			break
		}
	}
	if rec.IP == "" {
		return nil, fmt.Errorf("bridge plugin returned no address in %s", n.subnet)
	}
	// The host end of the instance's veth came into the host's namespace
	// with the host's defaults, IPv6 on: off, like the bridge it is a port
	// of, so it never speaks IPv6 on the environment's segment.
	for _, ifc := range r.Interfaces {
		if ifc.Sandbox == "" && ifc.Name != n.bridge {
			if err := disableIPv6(ifc.Name); err != nil {
				return nil, err
			}
		}
	}

	if !warm {
		m.wmu.Lock()
		m.warm[n.name] = true
		m.wmu.Unlock()
	}
	return rec, nil
}

// cniDel runs CNI DEL for both networks. Plugins treat DEL of something
// absent as success, so this also cleans half-made attachments.
func (m *Manager) cniDel(ctx context.Context, n *envNet, id, nsPath string) error {
	m.addMu.RLock()
	defer m.addMu.RUnlock()
	lost := !isNetNS(nsPath)
	if lost {
		// Per the CNI spec an absent namespace is passed as "", so plugins
		// still release the IP and host-side rules instead of failing.
		nsPath = ""
	}
	errBridge := m.cni.DelNetworkList(ctx, n.bridged, m.runtimeConf(id, nsPath, "eth0"))
	if errBridge != nil && !lost {
		// Most likely a masquerade rule that no DEL undid still holds the
		// id's chain (see removeMasquerade); DEL is safe to repeat.
		m.log.Info("CNI DEL failed; removing the instance's masquerade rules and trying again", "id", id, "error", errBridge)
		if err := m.removeMasquerade(ctx, n.bridged.Name, id); err == nil {
			errBridge = m.cni.DelNetworkList(ctx, n.bridged, m.runtimeConf(id, nsPath, "eth0"))
		}
	}
	errLo := m.cni.DelNetworkList(ctx, n.loopback, m.runtimeConf(id, nsPath, "lo"))
	var errMasq error
	if lost && errBridge == nil {
		errMasq = m.removeMasquerade(ctx, n.bridged.Name, id)
	}
	return errors.Join(errBridge, errLo, errMasq)
}

// Detach implements network.Manager.
func (m *Manager) Detach(ctx context.Context, id, environment string) error {
	if err := validateID(id); err != nil {
		return err
	}
	unlock := m.ids.lock(id)
	defer unlock()
	r, err := m.readRecord(id)
	if err != nil {
		return err
	}
	if r == nil {
		if _, err := os.Lstat(m.netnsPath(id)); err == nil {
			return m.removeDebris(ctx, id)
		}
		return nil
	}
	if environment != "" && r.Environment != environment {
		return v1.Conflict("instance %q is attached to environment %q, not %q", id, r.Environment, environment)
	}
	return m.detach(ctx, r)
}

// detach undoes r; the caller holds r.ID's lock. The record goes last so a
// failure leaves something to retry from.
func (m *Manager) detach(ctx context.Context, r *record) error {
	m.mu.Lock()
	_, allocated := m.alloc.Environments[r.Environment]
	m.mu.Unlock()
	if allocated {
		n, err := m.ensureEnv(ctx, r.Environment)
		if err != nil {
			return err
		}
		if err := m.cniDel(ctx, n, r.ID, r.NetNSPath); err != nil {
			return fmt.Errorf("detach %q: %w", r.ID, err)
		}
		if err := removeNetNS(r.NetNSPath); err != nil {
			return err
		}
	} else if err := m.removeDebris(ctx, r.ID); err != nil {
		// The environment's allocation is gone (a removed or hand-edited
		// data dir); ensureEnv would allocate a fresh subnet just to undo
		// this, so fall back to the config libcni cached at ADD time.
		return fmt.Errorf("detach %q: %w", r.ID, err)
	}
	if err := os.Remove(m.recordPath(r.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("detach %q: %w", r.ID, err)
	}
	m.log.Debug("detached", "id", r.ID, "environment", r.Environment, "ip", r.IP)
	return nil
}

// Lookup implements network.Manager.
func (m *Manager) Lookup(ctx context.Context, id, environment string) (network.Attachment, error) {
	if err := validateID(id); err != nil {
		return network.Attachment{}, err
	}
	r, err := m.readRecord(id)
	if err != nil {
		return network.Attachment{}, err
	}
	if r == nil || (environment != "" && r.Environment != environment) {
		return network.Attachment{}, v1.NotFound("instance %q has no network in environment %q", id, environment)
	}
	return m.attachment(r), nil
}

// GC detaches every attachment whose id keep rejects, and removes namespace
// files that have no record (a crash mid-Attach). The server calls it at
// start with the set of instances it still knows.
func (m *Manager) GC(ctx context.Context, keep func(id string) bool) error {
	recs, err := m.records()
	if err != nil {
		return err
	}
	var errs []error
	known := make(map[string]bool, len(recs))
	for _, r := range recs {
		known[r.ID] = true
		if keep(r.ID) {
			continue
		}
		m.log.Info("collecting leaked attachment", "id", r.ID, "environment", r.Environment, "ip", r.IP)
		if err := m.Detach(ctx, r.ID, r.Environment); err != nil {
			errs = append(errs, err)
		}
	}
	entries, err := os.ReadDir(m.netnsDir())
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, e := range entries {
		id := e.Name()
		if known[id] || keep(id) {
			continue
		}
		unlock := m.ids.lock(id)
		if r, _ := m.readRecord(id); r == nil {
			errs = append(errs, m.removeDebris(ctx, id))
		}
		unlock()
	}
	return errors.Join(errs...)
}

// removeDebris cleans up after a crash between creating id's namespace and
// writing its record: whatever CNI ADDs completed are in libcni's cache, with
// the exact config they ran with, so they can be deleted without knowing the
// environment. The caller holds id's lock.
func (m *Manager) removeDebris(ctx context.Context, id string) error {
	nsPath := m.netnsPath(id)
	cached, err := m.cni.GetCachedAttachments(id)
	if err != nil {
		return fmt.Errorf("read CNI cache of %q: %w", id, err)
	}
	var errs []error
	done := map[string]bool{}
	for _, a := range cached {
		list, err := libcni.NetworkConfFromBytes(a.Config)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		done[list.Name] = true
		rt := m.runtimeConf(id, nsPath, a.IfName)
		lost := !isNetNS(nsPath)
		if lost {
			rt.NetNS = ""
		}
		err = m.cni.DelNetworkList(ctx, list, rt)
		if lost && err == nil {
			err = m.removeMasquerade(ctx, list.Name, id)
		}
		errs = append(errs, err)
	}
	errs = append(errs, m.removeUncached(ctx, id, done), removeNetNS(nsPath))
	m.log.Info("removed debris of an interrupted attach", "id", id)
	return errors.Join(errs...)
}

// removeUncached undoes what the bridge and firewall plugins made for id
// in networks libcni holds no result of (all but done): a server killed
// while they ran never cached it, as libcni caches a result only once
// every plugin returned, but the plugins ran on and left an address, a
// masquerade rule and the firewall's ACCEPT rules behind. The masquerade
// rule, tagged with the network and id, says which network and address.
// The caller holds id's lock.
func (m *Manager) removeUncached(ctx context.Context, id string, done map[string]bool) error {
	rules, err := m.masquerades(ctx, id)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range rules {
		env, ok := strings.CutPrefix(r.network, m.cfg.BridgePrefix+"-")
		if done[r.network] || !ok {
			continue
		}
		m.mu.Lock()
		_, allocated := m.alloc.Environments[env]
		m.mu.Unlock()
		if !allocated {
			continue
		}
		n, err := m.ensureEnv(ctx, env)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// The firewall's rules name only the address: they are id's
		// while its lease still names id, and another instance's once
		// the address went to it.
		if ip, _, _ := strings.Cut(r.source, "/"); m.leaseHolder(r.network, ip) == id {
			errs = append(errs, m.removeFirewallRules(ctx, ip))
		}
		// An absent namespace makes the DEL release the lease, and then
		// the masquerade rules go by their tag.
		errs = append(errs, m.cniDel(ctx, n, id, ""))
	}
	return errors.Join(errs...)
}

// leaseHolder reads whom host-local gave ip in network: its file there
// holds the id, then the interface name.
func (m *Manager) leaseHolder(network, ip string) string {
	b, err := os.ReadFile(filepath.Join(m.ipamDir(), network, ip))
	if err != nil {
		return ""
	}
	holder, _, _ := strings.Cut(strings.ReplaceAll(string(b), "\r", ""), "\n")
	return strings.TrimSpace(holder)
}
