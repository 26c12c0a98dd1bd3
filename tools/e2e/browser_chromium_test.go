//go:build linux

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Headless Chromium, driven by its command line: one process per page,
// which loads the page, lets it run for a budget of virtual time, then
// writes a screenshot and prints the DOM as it stands.

const (
	browserWidth  = 1280
	browserHeight = 1000
	// The admin page reloads itself every 2s (the demo's AdminRefresh):
	// the budget must end before that.
	browserBudget  = 1000 * time.Millisecond
	browserTimeout = 60 * time.Second // one page, start to exit
)

// browserChromium returns Chromium's path: skips the test when it is not
// installed, fails it instead when CI is set.
func browserChromium(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("chromium not found (Debian packages chromium and fonts-liberation): %v", err)
		}
		t.Skipf("chromium not found (apt-get install chromium): %v", err)
	}
	return path
}

// browserPage is one page as headless Chromium rendered it.
type browserPage struct {
	DOM string // the serialized DOM after the budget
	PNG string // path of the screenshot, browserWidth × browserHeight
}

// browserRender loads url in a fresh headless Chromium (a new profile,
// no network of its own) and returns its DOM and screenshot, the latter
// written to dir as name.png, the DOM beside it as name.dom.html. Chromium
// and every process it started are gone when it returns.
func browserRender(t *testing.T, chromium, dir, name, url string) browserPage {
	t.Helper()
	work, err := os.MkdirTemp(dir, name+"-profile-")
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, name+".png")
	ctx, stop := context.WithTimeout(context.Background(), browserTimeout)
	defer stop()
	cmd := exec.CommandContext(ctx, chromium,
		"--headless",
		"--no-sandbox", // root on CI machines
		"--disable-gpu",
		"--disable-quic",
		"--no-first-run",
		"--disable-background-networking", // the network is closed: no calls home
		"--disable-component-update",
		"--disable-sync",
		"--disable-dev-shm-usage", // Debian's wrapper fails to decide it when /dev/shm is mounted twice
		// Only the demo: zpages' page asks Google Fonts and cdnjs for its
		// style, which would make its rendering depend on the network (and
		// a hung fetch stall the virtual time); without it, the page is
		// unstyled, always.
		"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
		"--hide-scrollbars",
		"--user-data-dir="+filepath.Join(work, "profile"),
		"--window-size="+strconv.Itoa(browserWidth)+","+strconv.Itoa(browserHeight),
		"--virtual-time-budget="+strconv.FormatInt(browserBudget.Milliseconds(), 10),
		"--screenshot="+shot,
		"--dump-dom",
		url,
	)
	// Chromium's crash reports and caches go to the scratch directory,
	// not to the home of whoever runs the test.
	cmd.Env = append(os.Environ(),
		"HOME="+work,
		"XDG_CONFIG_HOME="+filepath.Join(work, "config"),
		"XDG_CACHE_HOME="+filepath.Join(work, "cache"),
	)
	// A process group of its own, so that the browser's helpers (zygote,
	// renderer, GPU and network services) can be found and ended with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr

	start := time.Now()
	err = cmd.Run()
	if cmd.Process != nil {
		browserEnd(t, cmd.Process.Pid, work)
	}
	if err != nil {
		t.Fatalf("chromium %s: %v after %v\nstderr:\n%s", url, err, time.Since(start).Round(time.Millisecond), browserStderr(stderr.String()))
	}
	t.Logf("chromium rendered %s in %v", url, time.Since(start).Round(time.Millisecond))
	dom := stdout.String()
	if !strings.Contains(dom, "<html") {
		t.Fatalf("chromium %s printed no DOM\nstderr:\n%s", url, browserStderr(stderr.String()))
	}
	if err := os.WriteFile(filepath.Join(dir, name+".dom.html"), stdout.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(shot); err != nil {
		t.Fatalf("chromium %s wrote no screenshot: %v\nstderr:\n%s", url, err, browserStderr(stderr.String()))
	}
	return browserPage{DOM: dom, PNG: shot}
}

// browserStderr leaves out Chromium's complaints about the missing D-Bus,
// which every run on a machine without a desktop prints.
func browserStderr(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "dbus") || strings.TrimSpace(l) == "" {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

// browserEnd makes sure that no process of Chromium's outlives it: those
// of its process group (zygotes, renderers, GPU and network services),
// and those that left the group but name the run's scratch directory
// (the crash handlers, which start sessions of their own). It gives them
// a moment to exit, then kills those still there, and fails the test if
// one is still running afterwards.
func browserEnd(t *testing.T, pgid int, scratch string) {
	t.Helper()
	left := browserWaitGone(pgid, scratch, 2*time.Second)
	if len(left) == 0 {
		return
	}
	t.Logf("chromium left %d processes behind (%v): killing them", len(left), left)
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Errorf("killing chromium's process group %d: %v", pgid, err)
	}
	for _, pid := range left {
		syscall.Kill(pid, syscall.SIGKILL) // those of the group are gone already (ESRCH)
	}
	if left := browserWaitGone(pgid, scratch, 10*time.Second); len(left) > 0 {
		t.Errorf("chromium processes %v still running after SIGKILL", left)
	}
}

// browserWaitGone waits up to d for the processes browserAlive finds to
// exit, and returns those still running.
func browserWaitGone(pgid int, scratch string, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		left := browserAlive(pgid, scratch)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond) // processes exiting: there is nothing to wait on
	}
}

// browserAlive lists the processes that have not exited (zombies waiting
// for init to reap them have) and are of the process group pgid or have
// scratch in their command line.
func browserAlive(pgid int, scratch string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, err := strconv.Atoi(f[2]); err == nil && g == pgid {
			pids = append(pids, pid)
			continue
		}
		if cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && bytes.Contains(cmdline, []byte(scratch)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// browserCheckPNG checks that path is a PNG of the window's size that
// shows something: more than a few colours, and more than a sliver of the
// page differing from its background.
func browserCheckPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Errorf("%s: not a PNG: %v", path, err)
		return
	}
	if got, want := img.Bounds().Size(), image.Pt(browserWidth, browserHeight); got != want {
		t.Errorf("%s: %v pixels, want %v", path, got, want)
	}
	colours, ink := browserInk(img)
	total := img.Bounds().Dx() * img.Bounds().Dy()
	t.Logf("%s: %d colours, %.1f%% of the pixels not background", filepath.Base(path), colours, 100*float64(ink)/float64(total))
	if colours < 16 {
		t.Errorf("%s: only %d distinct colours: a blank page?", path, colours)
	}
	if ink < total/200 {
		t.Errorf("%s: only %d of %d pixels differ from the background: a blank page?", path, ink, total)
	}
}

// browserInk counts the distinct colours of img and its pixels that
// differ from the top-left one (the page's background).
func browserInk(img image.Image) (colours, ink int) {
	b := img.Bounds()
	seen := make(map[[4]uint32]bool)
	r0, g0, b0, a0 := img.At(b.Min.X, b.Min.Y).RGBA()
	bg := [4]uint32{r0, g0, b0, a0}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			c := [4]uint32{r, g, bl, a}
			seen[c] = true
			if c != bg {
				ink++
			}
		}
	}
	return len(seen), ink
}

// browserKeep copies the files of a rendered page to $SCREENSHOT_DIR, if
// set, for people to look at.
func browserKeep(t *testing.T, files ...string) {
	t.Helper()
	dir := os.Getenv("SCREENSHOT_DIR")
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, filepath.Base(f))
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("kept %s", dst)
	}
}

// browserText is the text of an HTML fragment: tags dropped, entities
// decoded, blanks collapsed.
func browserText(fragment string) string {
	s := browserTag.ReplaceAllString(fragment, " ")
	return strings.Join(strings.Fields(html.UnescapeString(s)), " ")
}

// browserRows returns the rows of the tables of an HTML document, each as
// the text of its cells, with the row's markup.
func browserRows(doc string) []browserRow {
	var rows []browserRow
	for _, m := range browserTR.FindAllStringSubmatch(doc, -1) {
		r := browserRow{HTML: m[1]}
		for _, c := range browserTD.FindAllStringSubmatch(m[1], -1) {
			r.Cells = append(r.Cells, browserText(c[1]))
		}
		rows = append(rows, r)
	}
	return rows
}

var (
	browserTag = regexp.MustCompile(`<[^>]*>`)
	browserTR  = regexp.MustCompile(`(?is)<tr[^>]*>(.*?)</tr>`)
	browserTD  = regexp.MustCompile(`(?is)<t[dh][^>]*>(.*?)</t[dh]>`)
)

type browserRow struct {
	Cells []string
	HTML  string
}

func (r browserRow) String() string { return fmt.Sprintf("%q", r.Cells) }
