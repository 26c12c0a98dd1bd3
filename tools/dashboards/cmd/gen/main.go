// Command gen writes the Grafana dashboards of package dashboards as JSON
// files, the ones Grafana provisions. Run it from tools/dashboards:
//
//	go run ./cmd/gen
//
// or with -dir to write them elsewhere. The tests of package dashboards
// fail while the files in dashboards/grafana/dashboards differ from what
// it writes.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cancelable-go/cancelable/tools/dashboards"
)

func main() {
	dir := flag.String("dir", filepath.Join("..", "..", "dashboards", "grafana", "dashboards"), "directory to write the dashboards to")
	flag.Parse()
	if err := generate(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func generate(dir string) error {
	files, err := dashboards.Dashboards()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		path := filepath.Join(dir, f.Name)
		if err := os.WriteFile(path, f.JSON, 0o644); err != nil {
			return err
		}
		fmt.Println("wrote", path)
	}
	return nil
}
