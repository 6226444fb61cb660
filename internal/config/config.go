// Package config turns flags, environment and defaults into the one Config
// the composition root hands out, part by part. Nothing below
// internal/server reads flags or environment variables.
package config

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	v1 "berth.dev/berth/api/v1"
)

// Config is everything `berth server` can be told.
type Config struct {
	// DataDir holds the store, token, logs, volumes, network state and (when
	// Berth runs its own) containerd's root.
	DataDir string
	// APIAddr is where the HTTP API listens.
	APIAddr string
	// GatewayAddr is where the gateway listens.
	GatewayAddr string
	// ContainerdSocket is an existing containerd to use; empty means Berth
	// starts and supervises its own under DataDir/containerd.
	ContainerdSocket string
	// ContainerdNamespace isolates Berth's containers in a shared containerd.
	ContainerdNamespace string
	// CNIPluginDirs are searched for CNI plugin binaries.
	CNIPluginDirs []string
	// SubnetPool is carved into one /24 per environment.
	SubnetPool string
	// BridgePrefix names the environments' bridges (berth0, berth1, …).
	BridgePrefix string
	// Domain is the gateway's host suffix: NAME.ENV.Domain.
	Domain string
	// LogShim is the argv prefix of the binary containerd's shim runs to
	// write container logs; by default this binary's own `log-shim`.
	LogShim []string
	// MetricsPublic serves /metrics without the API token.
	MetricsPublic bool
	// LogMaxAge and LogMaxBytes bound the instance logs kept per workload
	// after their instances are gone.
	LogMaxAge   time.Duration
	LogMaxBytes int64
	// OTLPEndpoint receives traces over OTLP/HTTP when set; traces are also
	// kept in a bounded store of TraceStoreSize traces, sampled at
	// TraceSampleRatio.
	OTLPEndpoint     string
	TraceSampleRatio float64
	TraceStoreSize   int
	// Backend is where instances run: "local" (this machine: containerd,
	// runc, CNI) or "kubernetes" (a cluster).
	Backend string
	// Kubeconfig is the cluster's kubeconfig for the kubernetes backend;
	// empty means the in-cluster config (Berth running as a pod).
	Kubeconfig string
	// NamespacePrefix makes an environment's namespace: PREFIX+ENV.
	NamespacePrefix string
	// ClusterGatewayAddr is where the gateway listens for calls from pods
	// (`http://NAME/` inside an environment); kubernetes backend only.
	ClusterGatewayAddr string
	// ClusterGatewayAdvertise is the IP:PORT pods reach it at; empty means
	// ClusterGatewayAddr (whose host must then be an address, not 0.0.0.0).
	ClusterGatewayAdvertise string
	// GatewayNamespace is the namespace Berth's own pod runs in, when it
	// runs in the cluster: environments' NetworkPolicies let it in.
	GatewayNamespace string
	// RegistryAdvertise is the HOST:PORT the cluster's nodes pull Berth's
	// built-in registry from; empty means the API address.
	RegistryAdvertise string
	// MaxStandbys caps the prepared standby instances on this machine, all
	// functions together (0: no cap); the least recently active functions
	// give theirs back first.
	MaxStandbys int
	// StandbyMemory is how much memory the frozen standbys on this machine
	// may hold together (a quantity: "1Gi"); a standby beyond it waits
	// created but not started, and "0" keeps every standby so.
	StandbyMemory string
	// LogLevel and LogFormat ("text" or "json") shape the server's own logs.
	LogLevel  slog.Level
	LogFormat string
	// HistoryRetention is how long the per-minute traffic history the
	// advisor replays is kept; AdviceMinHistory how much of it advice
	// needs. PriceSheet is a YAML price sheet replacing the default (AWS
	// list prices) for advice.
	HistoryRetention time.Duration
	AdviceMinHistory time.Duration
	PriceSheet       string
}

// Default returns the documented defaults.
func Default() Config {
	return Config{
		DataDir:             "/var/lib/berth",
		APIAddr:             "127.0.0.1:7070",
		GatewayAddr:         "127.0.0.1:8080",
		ContainerdNamespace: "berth",
		CNIPluginDirs:       []string{"/usr/lib/cni", "/opt/cni/bin"},
		SubnetPool:          "10.89.0.0/16",
		BridgePrefix:        "berth",
		Domain:              "berth.localhost",
		LogMaxAge:           7 * 24 * time.Hour,
		LogMaxBytes:         100 << 20,
		TraceSampleRatio:    0.01, // tracing.DefaultSampleRatio; errors and cold starts always
		TraceStoreSize:      1000,
		MaxStandbys:         100,
		StandbyMemory:       "1Gi",
		Backend:             "local",
		NamespacePrefix:     "berth-",
		ClusterGatewayAddr:  "0.0.0.0:8081",
		LogLevel:            slog.LevelInfo,
		LogFormat:           "text",
		HistoryRetention:    30 * 24 * time.Hour,
		AdviceMinHistory:    time.Hour,
	}
}

// Validate checks what can be checked before anything starts.
func (c Config) Validate() error {
	if c.DataDir == "" {
		return fmt.Errorf("--data-dir: must not be empty")
	}
	if !filepath.IsAbs(c.DataDir) {
		return fmt.Errorf("--data-dir: %q must be an absolute path", c.DataDir)
	}
	for flag, addr := range map[string]string{"--api": c.APIAddr, "--gateway": c.GatewayAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s: %q is not host:port: %v", flag, addr, err)
		}
	}
	if _, _, err := net.ParseCIDR(c.SubnetPool); err != nil {
		return fmt.Errorf("--subnet-pool: %v", err)
	}
	if c.TraceSampleRatio < 0 || c.TraceSampleRatio > 1 {
		return fmt.Errorf("--trace-sample-ratio: %v is not between 0 and 1", c.TraceSampleRatio)
	}
	if c.MaxStandbys < 0 {
		return fmt.Errorf("--max-standbys: %d is negative (0 means no cap)", c.MaxStandbys)
	}
	if _, err := c.StandbyMemoryBytes(); err != nil {
		return err
	}
	if c.TraceStoreSize < 1 {
		return fmt.Errorf("--trace-store-size: must be at least 1")
	}
	if c.LogMaxAge <= 0 || c.LogMaxBytes <= 0 {
		return fmt.Errorf("--log-max-age and --log-max-bytes must be positive")
	}
	switch c.Backend {
	case "local":
	case "kubernetes":
		if _, _, err := net.SplitHostPort(c.ClusterGatewayAddr); err != nil {
			return fmt.Errorf("--cluster-gateway: %q is not host:port: %v", c.ClusterGatewayAddr, err)
		}
		adv := c.ClusterGatewayAdvertise
		if adv == "" {
			adv = c.ClusterGatewayAddr
		}
		host, _, err := net.SplitHostPort(adv)
		if ip := net.ParseIP(host); err != nil || ip == nil || ip.IsUnspecified() {
			return fmt.Errorf("--cluster-gateway-advertise: %q must be the IP:PORT pods reach the gateway at (--cluster-gateway %s listens on every address)", adv, c.ClusterGatewayAddr)
		}
	default:
		return fmt.Errorf("--backend: %q is neither local nor kubernetes", c.Backend)
	}
	if c.HistoryRetention < time.Hour || c.AdviceMinHistory < time.Minute {
		return fmt.Errorf("--history-retention must be at least 1h and --advice-min-history at least 1m")
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("--log-format: %q is neither text nor json", c.LogFormat)
	}
	return nil
}

// Paths under the data dir, in one place so every part agrees.
func (c Config) TokenPath() string        { return filepath.Join(c.DataDir, "token") }
func (c Config) ClientConfigPath() string { return filepath.Join(c.DataDir, "client.json") }
func (c Config) StorePath() string        { return filepath.Join(c.DataDir, "state.db") }
func (c Config) LogDir() string           { return filepath.Join(c.DataDir, "logs") }
func (c Config) VolumeDir() string        { return filepath.Join(c.DataDir, "volumes") }
func (c Config) NetworkDir() string       { return filepath.Join(c.DataDir, "network") }
func (c Config) ContainerdDir() string    { return filepath.Join(c.DataDir, "containerd") }
func (c Config) RunDir() string           { return filepath.Join(c.DataDir, "run") }
func (c Config) HistoryPath() string      { return filepath.Join(c.DataDir, "history.db") }

// StandbyMemoryBytes is StandbyMemory in bytes.
func (c Config) StandbyMemoryBytes() (int64, error) {
	if c.StandbyMemory == "" || c.StandbyMemory == "0" {
		return 0, nil
	}
	n, err := v1.ParseMemory(c.StandbyMemory)
	if err != nil {
		return 0, fmt.Errorf("--standby-memory: %v", err)
	}
	return n, nil
}
