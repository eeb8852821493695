package localsrv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgepixel/edgepixel/tests/deps"
	"github.com/edgepixel/edgepixel/tests/proc"
)

// ZooKeeper is a running private ZooKeeper server (a standalone
// QuorumPeerMain), which replicated ClickHouse tables and distributed DDL
// coordinate through.
type ZooKeeper struct {
	Addr string // 127.0.0.1:port, the client port
	Dir  string // data directory, and zoo.cfg
	p    *proc.Proc
}

// ZooKeeperAvailable reports whether Debian's zookeeper package (its jar)
// and java are installed, and where java is.
func ZooKeeperAvailable() (java string, ok bool) { return deps.ZooKeeper.Path("") }

// StartZooKeeper starts ZooKeeper with its data in dir on 127.0.0.1:port
// (0 picks a free port) and waits until it serves requests (see serving).
// Its admin server is off and srvr is the only four-letter command allowed.
//
// A port it picked itself (0) that another process takes before the JVM
// binds it is picked again, up to three times: ZooKeeper then exits
// during startup without saying why (its logger is SLF4J's no-op), as it
// did in a CI run while the other packages' servers started.
func StartZooKeeper(ctx context.Context, dir string, port int) (*ZooKeeper, error) {
	for try := 1; ; try++ {
		z, err := startZooKeeperOnce(ctx, dir, port)
		if err == nil || port != 0 || try == 3 || ctx.Err() != nil || !strings.Contains(err.Error(), "exited during startup") {
			return z, err
		}
	}
}

func startZooKeeperOnce(ctx context.Context, dir string, port int) (*ZooKeeper, error) {
	java, ok := ZooKeeperAvailable()
	if !ok {
		return nil, fmt.Errorf("zookeeper not found; %s", deps.Advice([]deps.Program{deps.ZooKeeper}))
	}
	dir, port, err := serverDir(dir, port)
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "zoo.cfg")
	// tickTime bounds the session timeouts clients may ask for (2 to 20
	// ticks): ClickHouse's default 30 s session needs 1.5 s ticks or more.
	conf := fmt.Sprintf("tickTime=2000\ndataDir=%s\nclientPort=%d\nclientPortAddress=127.0.0.1\n"+
		"admin.enableServer=false\n4lw.commands.whitelist=srvr\nmaxClientCnxns=0\n", filepath.Join(dir, "data"), port)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	z := &ZooKeeper{Addr: hostPort(port), Dir: dir}
	z.p, err = startServer(ctx, "zookeeper", filepath.Join(dir, "zookeeper.log"), 60*time.Second,
		func(*proc.Proc) error { return z.serving() },
		java, "-Xmx256m", "-cp", deps.ZooKeeper.Files[0], "org.apache.zookeeper.server.quorum.QuorumPeerMain", cfg)
	if err != nil {
		return nil, err
	}
	return z, nil
}

// serving asks the four-letter command srvr, which a server answers with
// its version and mode once it serves requests, and with "not currently
// serving requests" while it still loads its data. ruok is not enough: it
// answers imok from the moment the port is open, and a server started on
// a kept data directory then closes the sessions clients open while it
// loads (clickhouse-server 18.16 exits when that happens to the
// replicated tables it loads at start).
func (z *ZooKeeper) serving() error {
	c, err := net.DialTimeout("tcp", z.Addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("srvr")); err != nil {
		return err
	}
	b, _ := io.ReadAll(io.LimitReader(c, 4096))
	if !bytes.Contains(b, []byte("Mode: ")) {
		return fmt.Errorf("zookeeper on %s answered srvr with %q", z.Addr, b)
	}
	return nil
}

// CLI runs one command of ZooKeeper's own command-line client
// (ZooKeeperMain: create, delete, get, ls, ...) against the server, in a
// session of its own that ends with the command, and returns its output.
// Tests use it to put ZooKeeper in a state a fault would leave.
func (z *ZooKeeper) CLI(ctx context.Context, args ...string) (string, error) {
	java, ok := ZooKeeperAvailable()
	if !ok {
		return "", errors.New("zookeeper not found")
	}
	cmd := exec.CommandContext(ctx, java, append([]string{"-cp", deps.ZooKeeper.Files[0], "org.apache.zookeeper.ZooKeeperMain", "-server", z.Addr}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("zookeeper cli %v: %w: %s", args, err, out)
	}
	return string(out), nil
}

// Port returns the client port.
func (z *ZooKeeper) Port() int { return portOf(z.Addr) }

// Stop shuts ZooKeeper down (SIGTERM) and waits for it.
func (z *ZooKeeper) Stop() error {
	if z == nil {
		return nil
	}
	return z.p.Stop(15 * time.Second)
}

// Kill ends ZooKeeper at once, as a crash would.
func (z *ZooKeeper) Kill() error {
	if z == nil {
		return nil
	}
	return z.p.Kill()
}

// Restart starts ZooKeeper again on the same port and data directory
// (stopping it first if it still runs): clients that kept their sessions
// alive through the gap carry on, with everything it had stored.
func (z *ZooKeeper) Restart(ctx context.Context) error {
	if err := z.Stop(); err != nil {
		return err
	}
	n, err := StartZooKeeper(ctx, z.Dir, z.Port())
	if err != nil {
		return err
	}
	*z = *n
	return nil
}

// Pid is the process id, for measuring its resource use.
func (z *ZooKeeper) Pid() int { return z.p.Pid() }

// Running reports whether the process is still there.
func (z *ZooKeeper) Running() bool { return !z.p.Exited() }
