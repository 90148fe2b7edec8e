// Run by tests/runtimes.rs: a write through address 0 with sun.misc.Unsafe.
// The JVM's SIGSEGV handler writes hs_err_pid<PID>.log and aborts.
import java.lang.reflect.Field;
import sun.misc.Unsafe;

public class HardCrash {
    static void writeThroughNull(Unsafe unsafe) {
        unsafe.putAddress(0, 0);
    }

    public static void main(String[] args) throws Exception {
        Field f = Unsafe.class.getDeclaredField("theUnsafe");
        f.setAccessible(true);
        Unsafe unsafe = (Unsafe) f.get(null);
        System.out.println("ready");
        writeThroughNull(unsafe);
    }
}
