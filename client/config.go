package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// DefaultAddr is where a server started with default flags listens.
const DefaultAddr = "http://127.0.0.1:7070"

// SystemConfigPath is the client config `berth server` writes with its
// default data dir.
const SystemConfigPath = "/var/lib/berth/client.json"

// Config says which server to talk to and as whom. Its JSON form is the
// client.json file the server writes.
type Config struct {
	Addr  string `json:"addr"`
	Token string `json:"token"`
	// Gateway is the gateway's host:port, when the server wrote it; the CLI
	// uses it to print workload URLs.
	Gateway string `json:"gateway,omitempty"`

	// HTTPClient, when nil, is a client without an overall timeout: the
	// caller's ctx bounds each call, and logs -f must be able to stream
	// for as long as the user wants.
	HTTPClient *http.Client `json:"-"`

	// Source says where Addr and Token came from, for error messages.
	Source string `json:"-"`
}

// LoadConfig resolves the address and token in the order docs/api.md gives,
// after the CLI's own flags (which the caller applies on top):
// BERTH_ADDR/BERTH_TOKEN, then the first client.json found at $BERTH_CONFIG,
// ~/.berth/client.json, /var/lib/berth/client.json. Each field is taken from
// the first place that sets it, so BERTH_ADDR can point the CLI at another
// server while the token still comes from a file. With nothing found the
// address is DefaultAddr and the token empty.
func LoadConfig() (Config, error) {
	var paths []string
	if home, err := os.UserHomeDir(); err == nil {
		paths = append(paths, filepath.Join(home, ".berth", "client.json"))
	}
	paths = append(paths, SystemConfigPath)
	return loadConfig(os.Getenv, paths)
}

func loadConfig(getenv func(string) string, defaultPaths []string) (Config, error) {
	cfg := Config{Addr: getenv("BERTH_ADDR"), Token: getenv("BERTH_TOKEN")}
	if cfg.Addr != "" || cfg.Token != "" {
		cfg.Source = "environment"
	}

	file, path, err := readConfigFile(getenv("BERTH_CONFIG"), defaultPaths)
	if err != nil {
		return Config{}, err
	}
	if path != "" {
		if cfg.Addr == "" {
			cfg.Addr = file.Addr
		}
		if cfg.Token == "" {
			cfg.Token = file.Token
		}
		cfg.Gateway = file.Gateway
		if cfg.Source == "" {
			cfg.Source = path
		} else {
			cfg.Source += " and " + path
		}
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	return cfg, nil
}

// readConfigFile reads the first client config that exists. An explicit
// $BERTH_CONFIG must be readable; the default locations are skipped when
// missing or unreadable (the system one is mode 0600 and owned by root, so
// an ordinary user cannot read it, which is not an error).
func readConfigFile(explicit string, defaults []string) (Config, string, error) {
	if explicit != "" {
		cfg, err := parseConfigFile(explicit)
		if err != nil {
			return Config{}, "", fmt.Errorf("BERTH_CONFIG: %w", err)
		}
		return cfg, explicit, nil
	}
	for _, p := range defaults {
		cfg, err := parseConfigFile(p)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			continue
		}
		if err != nil {
			return Config{}, "", err
		}
		return cfg, p, nil
	}
	return Config{}, "", nil
}

func parseConfigFile(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return Config{}, fmt.Errorf("client config %s: %w", path, err)
	}
	return cfg, nil
}

// normalizeAddr accepts "host:port" as well as a URL, because that is how
// the server's --api flag spells it.
func normalizeAddr(addr string) string {
	addr = strings.TrimRight(strings.TrimSpace(addr), "/")
	if addr == "" {
		return DefaultAddr
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return addr
}
