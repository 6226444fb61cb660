// Package archive writes directories as tar streams (an OCI image layout
// sent to the node or the registry). It knows nothing of images.
package archive

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
)

// TarDir streams the directories and regular files under dir to w, with
// names relative to dir. Anything else (symlinks, devices) is left out: an
// image layout has none.
func TarDir(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if rel == "." || !(fi.IsDir() || fi.Mode().IsRegular()) {
			return nil
		}
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.IsDir() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
