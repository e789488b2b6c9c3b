package legiti.hadoop;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.attribute.PosixFilePermission;
import java.util.HashSet;
import java.util.Set;

import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsAction;
import org.apache.hadoop.fs.permission.FsPermission;

/**
 * Hadoop's local file system, whose setPermission is a chmod(2) system call through java.nio
 * instead of a forked `chmod` process (what Hadoop does without its native library, which the
 * pyspark wheel lacks): it is called for every file and directory created, thousands per range
 * write. Raw: no .crc side files either (every table is written and read by Spark's Parquet,
 * and replaced a whole day directory at a time). Built by legiti_assets/local_fs.py.
 */
public class NioRawLocalFileSystem extends RawLocalFileSystem {
  @Override
  public void setPermission(Path p, FsPermission permission) throws IOException {
    Set<PosixFilePermission> perms = new HashSet<PosixFilePermission>();
    add(perms, permission.getUserAction(), PosixFilePermission.OWNER_READ,
        PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_EXECUTE);
    add(perms, permission.getGroupAction(), PosixFilePermission.GROUP_READ,
        PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_EXECUTE);
    add(perms, permission.getOtherAction(), PosixFilePermission.OTHERS_READ,
        PosixFilePermission.OTHERS_WRITE, PosixFilePermission.OTHERS_EXECUTE);
    if (permission.getStickyBit()) {
      // java.nio cannot set the sticky bit: keep Hadoop's own (forking) behaviour for it
      super.setPermission(p, permission);
      return;
    }
    try {
      Files.setPosixFilePermissions(pathToFile(p).toPath(), perms);
    } catch (NoSuchFileException e) {
      throw new FileNotFoundException("File " + p + " does not exist");
    }
  }

  private static void add(Set<PosixFilePermission> perms, FsAction action,
      PosixFilePermission read, PosixFilePermission write, PosixFilePermission execute) {
    if (action.implies(FsAction.READ)) perms.add(read);
    if (action.implies(FsAction.WRITE)) perms.add(write);
    if (action.implies(FsAction.EXECUTE)) perms.add(execute);
  }
}
