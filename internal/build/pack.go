package build

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// entry is one file to put in a layer: src on disk (empty for a directory
// made up for the layer), name inside the image.
type entry struct {
	name string // slash path without leading slash; directories end in /
	src  string
}

// packer writes a layer tar whose bytes depend only on the files' contents,
// modes and link targets: entries sorted by name, every mtime the epoch, no
// user or group names, uid/gid as on disk (root in a base made by
// debootstrap, 0 for copied sources), hard links kept as links so a base's
// hard-linked files are stored once.
type packer struct {
	tw    *tar.Writer
	links map[[2]uint64]string // (dev, inode) → first name written
	seen  map[string]bool      // directories already written
	// rootOwned forces uid/gid 0 (sources copied from a user's checkout).
	rootOwned bool
	// normalize sets modes to 0755 for directories and executables and
	// 0644 for other files, so a checkout's umask does not change the
	// digest.
	normalize bool
}

func newPacker(w io.Writer, rootOwned bool) *packer {
	return &packer{tw: tar.NewWriter(w), links: map[[2]uint64]string{}, seen: map[string]bool{}, rootOwned: rootOwned}
}

// dir writes a directory entry not backed by a file on disk.
func (p *packer) dir(name string, mode int64) error {
	name = strings.TrimSuffix(name, "/") + "/"
	if p.seen[name] {
		return nil
	}
	p.seen[name] = true
	return p.tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: mode, ModTime: epoch, Format: tar.FormatPAX})
}

// file writes name with the given bytes, mode 0644 or as given.
func (p *packer) bytes(name string, mode int64, b []byte) error {
	if err := p.tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(b)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err := p.tw.Write(b)
	return err
}

// tree writes everything under root as prefix/…, in sorted order. skip
// names paths (relative to root, slash-separated) left out with their
// contents. Device nodes, sockets and fifos are left out: the runtime
// provides /dev.
func (p *packer) tree(root, prefix string, skip func(rel string, d fs.DirEntry) bool) error {
	var entries []entry
	err := filepath.WalkDir(root, func(file string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, file)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if skip != nil && skip(rel, d) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		name := path.Join(prefix, rel)
		if d.IsDir() {
			name += "/"
		}
		entries = append(entries, entry{name: name, src: file})
		return nil
	})
	if err != nil {
		return err
	}
	// WalkDir is lexical per directory already; a global sort on the
	// final name makes the order independent of how the walk nests.
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	for _, e := range entries {
		if err := p.add(e); err != nil {
			return err
		}
	}
	return nil
}

func (p *packer) add(e entry) error {
	fi, err := os.Lstat(e.src)
	if err != nil {
		return err
	}
	var link string
	if fi.Mode()&fs.ModeSymlink != 0 {
		if link, err = os.Readlink(e.src); err != nil {
			return err
		}
	} else if !fi.Mode().IsRegular() && !fi.IsDir() {
		return nil
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return err
	}
	hdr.Name = e.name
	hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = epoch, epoch, epoch
	hdr.Uname, hdr.Gname = "", ""
	hdr.Format = tar.FormatPAX
	hdr.PAXRecords = nil
	hdr.Devmajor, hdr.Devminor = 0, 0
	if p.rootOwned {
		hdr.Uid, hdr.Gid = 0, 0
	}
	if p.normalize {
		switch {
		case fi.IsDir():
			hdr.Mode = 0o755
		case hdr.Typeflag == tar.TypeSymlink:
			hdr.Mode = 0o777
		case fi.Mode().Perm()&0o111 != 0:
			hdr.Mode = 0o755
		default:
			hdr.Mode = 0o644
		}
	}
	if fi.IsDir() {
		if p.seen[e.name] {
			return nil
		}
		p.seen[e.name] = true
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && st.Nlink > 1 {
		key := [2]uint64{uint64(st.Dev), st.Ino}
		if first, ok := p.links[key]; ok {
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = first
			hdr.Size = 0
			return p.tw.WriteHeader(hdr)
		}
		p.links[key] = e.name
	}
	if err := p.tw.WriteHeader(hdr); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	f, err := os.Open(e.src)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(p.tw, f)
	if err != nil {
		return err
	}
	if n != hdr.Size {
		return fmt.Errorf("%s changed while it was packed", e.src)
	}
	return nil
}

func (p *packer) close() error { return p.tw.Close() }

// layerOf wraps an uncompressed layer tar held in memory. go-containerregistry
// compresses it; gzip from the standard library is deterministic, so equal
// tars give equal digests.
func layerOf(tarBytes []byte) (ggcr.Layer, error) {
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarBytes)), nil
	})
}

// gzipTo compresses to w with a header that has no name and no mtime, so
// the bytes depend on the content only.
func gzipTo(w io.Writer) *gzip.Writer {
	zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	return zw
}
