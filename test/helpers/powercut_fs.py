"""In-memory FUSE filesystem that can lose power, for durability tests.

Usage: powercut_fs.py MOUNTPOINT [CAPACITY_BYTES]. Needs root and /dev/fuse,
and Debian's python3-llfuse (1.4). It keeps two states of every file and
folder. The volatile state is what running processes see. The durable state
is what a disk would hold after a power cut. It follows the weakest model
POSIX allows, without ordering guarantees:
- a file's data and size become durable at fsync or fdatasync of that file;
- a folder's entries (create, mkdir, link, unlink, rmdir, rename) become
  durable at fsync of that folder, so a rename between folders needs both.
A new file or folder that a synced folder lists is durable with empty
content until it is synced itself.

Commands are lines on stdin, and each one gets one line of output on stdout:
- `cut`: power cut. The durable state replaces the volatile one and open
  handles are gone. Prints `cut done`.
- `cut torn SEED`: harsher power cut, seeded. Each file keeps its synced data
  plus a random prefix of its writes and truncations since then, and the
  last kept write may be torn (cut short) or zero-filled (size reached the
  disk, data did not). The folder operations since each folder's last sync
  are kept as a random prefix, in order. Prints `cut done`.
- `stats`: prints `stats` and a JSON object of operation counts.
End of input or SIGTERM unmounts the filesystem and ends the program. It
prints `mounted` once the mount is in place.

After a cut every inode gets a new number, so that the kernel drops what it
cached under the old ones (attributes, directory entries and page cache,
which llfuse keeps across opens).
"""
import errno
import json
import os
import random
import signal
import stat
import sys
import threading
import time

import llfuse

ROOT = llfuse.ROOT_INODE
BLOCK_SIZE = 4096


class Node:
    """One inode: a regular file with `data` or a folder with `entries` (name to inode number)."""

    def __init__(self, ino, mode, uid, gid):
        self.ino = ino
        self.mode = mode
        self.uid = uid
        self.gid = gid
        now = time.time_ns()
        self.atime_ns = self.mtime_ns = self.ctime_ns = now
        self.data = bytearray()
        self.entries = {}
        self.nlink = 0
        # Writes and truncations since the last fsync, in order: ("write", offset, bytes) or ("truncate", size).
        self.unsynced = []

    @property
    def is_dir(self):
        return stat.S_ISDIR(self.mode)

    def copy(self):
        node = Node(self.ino, self.mode, self.uid, self.gid)
        node.atime_ns, node.mtime_ns, node.ctime_ns = self.atime_ns, self.mtime_ns, self.ctime_ns
        node.data = bytearray(self.data)
        node.entries = dict(self.entries)
        return node

    def copy_empty(self):
        """Copy of the metadata only: what a synced folder entry points to before the inode is synced."""
        node = self.copy()
        node.data = bytearray()
        node.entries = {}
        return node


class DirectoryChange:
    """One folder operation, as the parts that change one folder entry each (inode None removes the entry)."""

    def __init__(self, parts):
        self.parts = parts


class PowerCutFs(llfuse.Operations):
    def __init__(self, capacity):
        super().__init__()
        self.capacity = capacity
        self.next_ino = ROOT + 1
        self.next_fh = 1
        uid, gid = os.getuid(), os.getgid()
        root = Node(ROOT, stat.S_IFDIR | 0o755, uid, gid)
        self.nodes = {ROOT: root}
        self.durable = {ROOT: root.copy()}
        # Folder operations not yet synced in every folder they touch, oldest first.
        self.changes = []
        self.handles = {}
        self.directory_listings = {}
        self.counts = {"cuts": 0, "fsync": 0, "fsyncdir": 0, "writes": 0, "renames": 0, "links": 0, "unlinks": 0, "creates": 0}
        self.recount_links()

    # Helpers.

    def node(self, ino):
        node = self.nodes.get(ino)
        if node is None:
            raise llfuse.FUSEError(errno.ENOENT)
        return node

    def directory(self, ino):
        node = self.node(ino)
        if not node.is_dir:
            raise llfuse.FUSEError(errno.ENOTDIR)
        return node

    def child(self, parent, name):
        ino = self.directory(parent).entries.get(name)
        if ino is None:
            raise llfuse.FUSEError(errno.ENOENT)
        return self.nodes[ino]

    def attributes(self, node):
        attr = llfuse.EntryAttributes()
        attr.st_ino = node.ino
        attr.generation = 0
        # No caching in the kernel: every access reaches this process, so a cut shows at once.
        attr.entry_timeout = 0
        attr.attr_timeout = 0
        attr.st_mode = node.mode
        attr.st_nlink = node.nlink
        attr.st_uid = node.uid
        attr.st_gid = node.gid
        attr.st_rdev = 0
        attr.st_size = len(node.data) if not node.is_dir else 4096
        attr.st_blksize = BLOCK_SIZE
        attr.st_blocks = (attr.st_size + 511) // 512
        attr.st_atime_ns = node.atime_ns
        attr.st_mtime_ns = node.mtime_ns
        attr.st_ctime_ns = node.ctime_ns
        return attr

    def new_node(self, mode, ctx):
        node = Node(self.next_ino, mode, ctx.uid, ctx.gid)
        self.next_ino += 1
        self.nodes[node.ino] = node
        return node

    def change_entries(self, parts):
        """Applies folder entry changes to the volatile state and logs them until their folders are synced."""
        for parent, name, ino in parts:
            entries = self.nodes[parent].entries
            old = entries.get(name)
            if old is not None:
                self.nodes[old].nlink -= 1
            if ino is None:
                entries.pop(name, None)
            else:
                entries[name] = ino
                self.nodes[ino].nlink += 1
            self.nodes[parent].mtime_ns = self.nodes[parent].ctime_ns = time.time_ns()
        self.changes.append(DirectoryChange(list(parts)))

    def recount_links(self):
        for node in self.nodes.values():
            node.nlink = 2 if node.is_dir else 0
        for node in self.nodes.values():
            for ino in node.entries.values():
                child = self.nodes[ino]
                child.nlink += 1 if not child.is_dir else 0
                if child.is_dir:
                    node.nlink += 1

    def live_nodes(self):
        """Nodes that still take space: linked from a folder, or unlinked but still open."""
        open_inodes = set(self.handles.values())
        return [node for node in self.nodes.values() if node.nlink > 0 or node.ino == ROOT or node.ino in open_inodes]

    def used_bytes(self):
        return sum(len(node.data) for node in self.live_nodes())

    # Power cut.

    def cut(self, seed=None):
        """Replaces the volatile state with what the disk would hold. A `seed` selects the torn model."""
        rng = random.Random(seed) if seed is not None else None
        disk = {ino: node.copy() for ino, node in self.durable.items()}
        if rng is not None:
            self.replay_data(disk, rng)
            self.replay_changes(disk, rng)
        # Keep what the root reaches, under new inode numbers.
        renumbered = {}
        pending = [ROOT]
        while pending:
            ino = pending.pop()
            if ino in renumbered:
                continue
            renumbered[ino] = ROOT if ino == ROOT else self.allocate_ino()
            pending.extend(disk[ino].entries.values())
        nodes = {}
        for old, new in renumbered.items():
            node = disk[old]
            node.ino = new
            node.entries = {name: renumbered[child] for name, child in node.entries.items()}
            node.unsynced = []
            nodes[new] = node
        self.nodes = nodes
        self.durable = {ino: node.copy() for ino, node in nodes.items()}
        self.changes = []
        self.handles = {}
        self.directory_listings = {}
        self.recount_links()
        self.counts["cuts"] += 1

    def allocate_ino(self):
        ino = self.next_ino
        self.next_ino += 1
        return ino

    def disk_node(self, disk, ino):
        """The node on disk for `ino`, created with empty content when only its folder entry reached the disk."""
        node = disk.get(ino)
        if node is None:
            node = self.nodes[ino].copy_empty()
            disk[ino] = node
        return node

    def replay_data(self, disk, rng):
        """Adds to each file on disk a random prefix of its unsynced writes. The last one kept may be torn or zero-filled."""
        for ino, node in self.nodes.items():
            if not node.unsynced:
                continue
            target = self.disk_node(disk, ino)
            keep = rng.randint(0, len(node.unsynced))
            for operation in node.unsynced[:keep]:
                apply_operation(target.data, operation)
            if keep < len(node.unsynced) and node.unsynced[keep][0] == "write" and rng.random() < 0.5:
                _, offset, data = node.unsynced[keep]
                if rng.random() < 0.5:
                    # Torn: only the first bytes of the write reached the disk.
                    kept = rng.randint(0, len(data))
                    apply_operation(target.data, ("write", offset, data[:kept]))
                else:
                    # Zero-filled: the new size is on disk, the blocks were never written.
                    apply_operation(target.data, ("write", offset, bytes(len(data))))

    def replay_changes(self, disk, rng):
        keep = rng.randint(0, len(self.changes))
        for change in self.changes[:keep]:
            for parent, name, ino in change.parts:
                entries = self.disk_node(disk, parent).entries
                if ino is None:
                    entries.pop(name, None)
                else:
                    self.disk_node(disk, ino)
                    entries[name] = ino

    # Lookup and attributes.

    def lookup(self, parent_inode, name, ctx):
        if name == b".":
            return self.attributes(self.directory(parent_inode))
        if name == b"..":
            for node in self.nodes.values():
                if parent_inode in node.entries.values():
                    return self.attributes(node)
            return self.attributes(self.node(ROOT))
        return self.attributes(self.child(parent_inode, name))

    def forget(self, inode_list):
        # Nodes are kept until the next cut, so that unlinked files stay readable while open.
        pass

    def getattr(self, inode, ctx):
        return self.attributes(self.node(inode))

    def setattr(self, inode, attr, fields, fh, ctx):
        node = self.node(inode)
        now = time.time_ns()
        if fields.update_size:
            operation = ("truncate", attr.st_size)
            apply_operation(node.data, operation)
            node.unsynced.append(operation)
            node.mtime_ns = now
        if fields.update_mode:
            node.mode = stat.S_IFMT(node.mode) | stat.S_IMODE(attr.st_mode)
        if fields.update_uid:
            node.uid = attr.st_uid
        if fields.update_gid:
            node.gid = attr.st_gid
        if fields.update_atime:
            node.atime_ns = attr.st_atime_ns
        if fields.update_mtime:
            node.mtime_ns = attr.st_mtime_ns
        node.ctime_ns = now
        return self.attributes(node)

    def access(self, inode, mode, ctx):
        self.node(inode)
        return True

    def statfs(self, ctx):
        data = llfuse.StatvfsData()
        data.f_bsize = BLOCK_SIZE
        data.f_frsize = BLOCK_SIZE
        data.f_blocks = self.capacity // BLOCK_SIZE
        free = max(0, self.capacity - self.used_bytes()) // BLOCK_SIZE
        data.f_bfree = free
        data.f_bavail = free
        data.f_files = 1_000_000
        data.f_ffree = 1_000_000 - len(self.live_nodes())
        data.f_favail = data.f_ffree
        data.f_namemax = 255
        return data

    # Folders.

    def mkdir(self, parent_inode, name, mode, ctx):
        parent = self.directory(parent_inode)
        if name in parent.entries:
            raise llfuse.FUSEError(errno.EEXIST)
        node = self.new_node(stat.S_IFDIR | stat.S_IMODE(mode), ctx)
        self.change_entries([(parent_inode, name, node.ino)])
        self.recount_links()
        return self.attributes(node)

    def rmdir(self, parent_inode, name, ctx):
        node = self.child(parent_inode, name)
        if not node.is_dir:
            raise llfuse.FUSEError(errno.ENOTDIR)
        if node.entries:
            raise llfuse.FUSEError(errno.ENOTEMPTY)
        self.change_entries([(parent_inode, name, None)])
        self.recount_links()

    def opendir(self, inode, ctx):
        node = self.directory(inode)
        fh = self.allocate_fh()
        # Offsets index this snapshot, so that a listing stays stable while the folder changes.
        self.directory_listings[fh] = (inode, sorted(node.entries.items()))
        return fh

    def readdir(self, fh, off):
        listing = self.directory_listings.get(fh)
        if listing is None:
            raise llfuse.FUSEError(errno.EBADF)
        for index in range(off, len(listing[1])):
            name, ino = listing[1][index]
            node = self.nodes.get(ino)
            if node is not None:
                yield name, self.attributes(node), index + 1

    def releasedir(self, fh):
        self.directory_listings.pop(fh, None)

    def fsyncdir(self, fh, datasync):
        listing = self.directory_listings.get(fh)
        if listing is None:
            raise llfuse.FUSEError(errno.EBADF)
        self.sync_directory(listing[0])

    def sync_directory(self, ino):
        node = self.nodes[ino]
        durable = self.durable.get(ino)
        if durable is None:
            durable = self.durable[ino] = node.copy_empty()
        durable.entries = dict(node.entries)
        durable.mode, durable.mtime_ns, durable.ctime_ns = node.mode, node.mtime_ns, node.ctime_ns
        for child in node.entries.values():
            if child not in self.durable:
                self.durable[child] = self.nodes[child].copy_empty()
        # The parts of logged operations on this folder are now on disk.
        for change in self.changes:
            change.parts = [part for part in change.parts if part[0] != ino]
        self.changes = [change for change in self.changes if change.parts]
        self.counts["fsyncdir"] += 1

    # Names.

    def unlink(self, parent_inode, name, ctx):
        node = self.child(parent_inode, name)
        if node.is_dir:
            raise llfuse.FUSEError(errno.EISDIR)
        self.change_entries([(parent_inode, name, None)])
        node.ctime_ns = time.time_ns()
        self.counts["unlinks"] += 1

    def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, ctx):
        node = self.child(parent_inode_old, name_old)
        target_parent = self.directory(parent_inode_new)
        existing = target_parent.entries.get(name_new)
        if existing is not None:
            target = self.nodes[existing]
            if target.is_dir and not node.is_dir:
                raise llfuse.FUSEError(errno.EISDIR)
            if node.is_dir and not target.is_dir:
                raise llfuse.FUSEError(errno.ENOTDIR)
            if target.is_dir and target.entries:
                raise llfuse.FUSEError(errno.ENOTEMPTY)
        if existing == node.ino:
            return
        self.change_entries([(parent_inode_old, name_old, None), (parent_inode_new, name_new, node.ino)])
        if node.is_dir:
            self.recount_links()
        node.ctime_ns = time.time_ns()
        self.counts["renames"] += 1

    def link(self, inode, new_parent_inode, new_name, ctx):
        node = self.node(inode)
        if node.is_dir:
            raise llfuse.FUSEError(errno.EPERM)
        if new_name in self.directory(new_parent_inode).entries:
            raise llfuse.FUSEError(errno.EEXIST)
        self.change_entries([(new_parent_inode, new_name, inode)])
        node.ctime_ns = time.time_ns()
        self.counts["links"] += 1
        return self.attributes(node)

    def symlink(self, parent_inode, name, target, ctx):
        raise llfuse.FUSEError(errno.EPERM)

    def mknod(self, parent_inode, name, mode, rdev, ctx):
        raise llfuse.FUSEError(errno.EPERM)

    # Files.

    def allocate_fh(self):
        fh = self.next_fh
        self.next_fh += 1
        return fh

    def create(self, parent_inode, name, mode, flags, ctx):
        parent = self.directory(parent_inode)
        if name in parent.entries:
            raise llfuse.FUSEError(errno.EEXIST)
        node = self.new_node(stat.S_IFREG | stat.S_IMODE(mode), ctx)
        self.change_entries([(parent_inode, name, node.ino)])
        fh = self.allocate_fh()
        self.handles[fh] = node.ino
        self.counts["creates"] += 1
        return fh, self.attributes(node)

    def open(self, inode, flags, ctx):
        node = self.node(inode)
        if node.is_dir:
            raise llfuse.FUSEError(errno.EISDIR)
        fh = self.allocate_fh()
        self.handles[fh] = inode
        return fh

    def handle(self, fh):
        ino = self.handles.get(fh)
        if ino is None:
            # A handle opened before a cut is gone, as the process that held it would be.
            raise llfuse.FUSEError(errno.EBADF)
        return self.nodes[ino]

    def read(self, fh, off, size):
        node = self.handle(fh)
        return bytes(node.data[off:off + size])

    def write(self, fh, off, buf):
        node = self.handle(fh)
        if off + len(buf) > len(node.data) and off + len(buf) - len(node.data) > self.capacity - self.used_bytes():
            raise llfuse.FUSEError(errno.ENOSPC)
        operation = ("write", off, bytes(buf))
        apply_operation(node.data, operation)
        node.unsynced.append(operation)
        node.mtime_ns = node.ctime_ns = time.time_ns()
        self.counts["writes"] += 1
        return len(buf)

    def flush(self, fh):
        pass

    def release(self, fh):
        self.handles.pop(fh, None)

    def fsync(self, fh, datasync):
        node = self.handle(fh)
        durable = self.durable.get(node.ino)
        if durable is None:
            durable = self.durable[node.ino] = node.copy_empty()
        durable.data = bytearray(node.data)
        durable.mode, durable.uid, durable.gid = node.mode, node.uid, node.gid
        durable.mtime_ns, durable.ctime_ns = node.mtime_ns, node.ctime_ns
        node.unsynced = []
        self.counts["fsync"] += 1


def apply_operation(data, operation):
    if operation[0] == "truncate":
        size = operation[1]
        if size < len(data):
            del data[size:]
        else:
            data.extend(bytes(size - len(data)))
        return
    _, offset, chunk = operation
    if offset > len(data):
        data.extend(bytes(offset - len(data)))
    data[offset:offset + len(chunk)] = chunk


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def serve_control(filesystem):
    """Runs the commands read from stdin. End of input unmounts."""
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "cut":
            seed = int(words[2]) if len(words) == 3 and words[1] == "torn" else None
            with llfuse.lock:
                filesystem.cut(seed)
            say("cut done")
        elif words[0] == "stats":
            with llfuse.lock:
                counts = dict(filesystem.counts)
            say("stats " + json.dumps(counts))
        else:
            say("error unknown command: " + line.strip())
    os.kill(os.getpid(), signal.SIGTERM)


def main():
    if len(sys.argv) < 2:
        raise SystemExit("usage: powercut_fs.py MOUNTPOINT [CAPACITY_BYTES]")
    mountpoint = sys.argv[1]
    capacity = int(sys.argv[2]) if len(sys.argv) > 2 else 256 * 1024 * 1024
    filesystem = PowerCutFs(capacity)
    options = set(llfuse.default_options)
    options.add("fsname=powercut")
    options.discard("default_permissions")
    llfuse.init(filesystem, mountpoint, options)
    threading.Thread(target=serve_control, args=(filesystem,), daemon=True).start()
    say("mounted")
    try:
        # One worker: every request runs under llfuse.lock, which a cut also takes.
        llfuse.main(workers=1)
    finally:
        llfuse.close(unmount=True)


if __name__ == "__main__":
    main()
