/* usage: java HardCrash
 * Writes through address 0 with sun.misc.Unsafe: the fault happens inside
 * the JVM, whose SIGSEGV handler finds it is not one it can recover from,
 * writes its fatal error report (hs_err_pid*.log) and aborts. */
import java.lang.reflect.Field;

public final class HardCrash {
    public static void main(String[] args) throws Exception {
        Field f = sun.misc.Unsafe.class.getDeclaredField("theUnsafe");
        f.setAccessible(true);
        sun.misc.Unsafe unsafe = (sun.misc.Unsafe) f.get(null);
        System.out.println("writing through address 0");
        unsafe.putAddress(0, 0);
        System.out.println("still alive");
    }
}
