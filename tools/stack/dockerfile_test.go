package stack

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction.
type instruction struct {
	cmd  string // upper case: FROM, COPY, RUN...
	args string
}

// parseDockerfile reads the instructions of a Dockerfile: comments
// dropped, continued lines joined. Enough for ours; no heredocs.
func parseDockerfile(t *testing.T, file string) []instruction {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if cont, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// stages splits instructions by FROM, keyed by stage name (or index).
func stages(ins []instruction) (names []string, by map[string][]instruction) {
	by = map[string][]instruction{}
	var cur string
	for i, in := range ins {
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			cur = f[0] + "#" + string(rune('0'+i))
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				cur = f[2]
			}
			names = append(names, cur)
		}
		by[cur] = append(by[cur], in)
	}
	return names, by
}

// dockerignored reports whether the build context leaves path out, for
// the patterns of our .dockerignore (a subset of its syntax).
func dockerignored(patterns []string, path string) bool {
	for _, p := range patterns {
		p = strings.TrimPrefix(p, "/")
		if strings.HasPrefix(p, "**/") {
			if ok, _ := filepath.Match(strings.TrimPrefix(p, "**/"), filepath.Base(path)); ok {
				return true
			}
			continue
		}
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
		if ok, _ := filepath.Match(p, path); ok {
			return true
		}
	}
	return false
}

// TestDockerfileBuildsTheSameBinary runs the build stage of the Dockerfile
// here, without a Docker engine: the build context as .dockerignore makes
// it, COPY into a fresh directory standing for the image, then its RUN
// commands. The binary must be byte for byte what `make canceldemo` builds
// from the working tree, and the final stage must run it as the compose
// file expects.
func TestDockerfileBuildsTheSameBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the demo twice")
	}
	names, by := stages(parseDockerfile(t, filepath.Join(repoRoot, "Dockerfile")))
	if len(names) != 2 || names[0] != "build" {
		t.Fatalf("stages %v, want a build stage and the image", names)
	}
	checkGoVersion(t, strings.Fields(by["build"][0].args)[0])

	ignoreData, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var ignore []string
	for _, l := range strings.Split(string(ignoreData), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			ignore = append(ignore, l)
		}
	}

	image := t.TempDir() // the build stage's file system
	workdir := "/"
	local := func(p string) string {
		if !filepath.IsAbs(p) {
			p = filepath.Join(workdir, p)
		}
		return filepath.Join(image, p)
	}
	for _, in := range by["build"][1:] {
		switch in.cmd {
		case "WORKDIR":
			workdir = filepath.Join(workdir, in.args)
			os.MkdirAll(local("."), 0o755)
		case "COPY":
			f := strings.Fields(in.args)
			dst := f[len(f)-1]
			for _, src := range f[:len(f)-1] {
				to := local(dst)
				if strings.HasSuffix(dst, "/") && src != "." {
					to = filepath.Join(to, filepath.Base(src))
				}
				copyContext(t, ignore, src, to)
			}
		case "RUN":
			// Absolute paths of the image live under image/.
			script := regexp.MustCompile(`(^|\s)/out/`).ReplaceAllString(in.args, "${1}"+filepath.Join(image, "out")+"/")
			os.MkdirAll(filepath.Join(image, "out"), 0o755)
			cmd := exec.Command("sh", "-c", script)
			cmd.Dir = local(".")
			cmd.Env = append(os.Environ(), "GOFLAGS=") // the image sets none
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("RUN %s: %v\n%s", in.args, err, out)
			}
		default:
			t.Fatalf("the test does not know %s: teach it", in.cmd)
		}
	}

	// The image stage: what it copies from the build stage and runs.
	var entry, cmd []string
	var copied string
	for _, in := range by[names[1]][1:] {
		switch in.cmd {
		case "COPY":
			f := strings.Fields(in.args)
			if f[0] != "--from=build" {
				t.Fatalf("the image copies %q from elsewhere than the build stage", in.args)
			}
			copied = filepath.Join(image, f[1])
			if f[2] != "/canceldemo" {
				t.Fatalf("the binary lands at %s, the compose healthcheck runs /canceldemo", f[2])
			}
		case "ENTRYPOINT":
			mustJSON(t, in.args, &entry)
		case "CMD":
			mustJSON(t, in.args, &cmd)
		}
	}
	if copied == "" || len(entry) != 1 || entry[0] != "/canceldemo" {
		t.Fatalf("the image runs %v with %q copied in", entry, copied)
	}

	ref := filepath.Join(t.TempDir(), "canceldemo")
	mk := exec.Command("make", "-s", "canceldemo", "CANCELDEMO_BIN="+ref)
	mk.Dir = repoRoot
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make canceldemo: %v\n%s", err, out)
	}
	if a, b := sum(t, copied), sum(t, ref); a != b {
		t.Errorf("the Dockerfile builds %x, make canceldemo builds %x", a, b)
	}

	// The image's default command and the compose healthcheck are
	// subcommands the binary knows.
	for _, args := range [][]string{append(cmd[:1:1], "-h"), {"health", "-h"}} {
		c := exec.Command(copied, args...)
		out, _ := c.CombinedOutput()
		if !bytes.Contains(out, []byte("Usage")) && !bytes.Contains(out, []byte("usage")) {
			t.Errorf("canceldemo %v does not look like a known subcommand:\n%s", args, out)
		}
	}
}

// copyContext copies src of the build context (the repository, less what
// .dockerignore leaves out) to dst.
func copyContext(t *testing.T, ignore []string, src, dst string) {
	t.Helper()
	root := filepath.Join(repoRoot, filepath.Clean(src))
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, p)
		if rel != "." && dockerignored(ignore, filepath.ToSlash(rel)) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		sub, _ := filepath.Rel(root, p)
		to := filepath.Join(dst, sub)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		return copyFile(p, to)
	})
	if err != nil {
		t.Fatalf("COPY %s: %v", src, err)
	}
}

func copyFile(from, to string) error {
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// checkGoVersion fails if the golang image is older than a go directive of
// the modules it builds.
func checkGoVersion(t *testing.T, image string) {
	t.Helper()
	m := regexp.MustCompile(`^golang:(\d+)\.(\d+)`).FindStringSubmatch(image)
	if m == nil {
		t.Fatalf("build image %s: want golang:1.N", image)
	}
	for _, mod := range []string{"go.mod", "cmd/canceldemo/go.mod"} {
		b, err := os.ReadFile(filepath.Join(repoRoot, mod))
		if err != nil {
			t.Fatal(err)
		}
		d := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindStringSubmatch(string(b))
		if d == nil {
			t.Fatalf("%s has no go directive", mod)
		}
		if d[1] != m[1] || atoi(d[2]) > atoi(m[2]) {
			t.Errorf("%s needs go %s.%s, the image has %s", mod, d[1], d[2], image)
		}
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func mustJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
}

func sum(t *testing.T, file string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}
