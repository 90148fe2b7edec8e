/* usage: java BenchNpe [N]   (default 1000000)
 * Calls a small method N times on an array whose every other element is
 * null, and catches the NullPointerException. JIT-compiled code checks for
 * null implicitly: a null receiver faults (SIGSEGV) and the JVM's own
 * handler turns the fault into the exception. HotSpot 17 takes about 55,000
 * such faults in this program (until C2 recompiles the method with an
 * explicit check), whatever N is past about 500,000. Prints
 * "elapsed_us=E npes=K" (the loop's own time). */
public final class BenchNpe {
    static final class Box {
        final int v;

        Box(int v) {
            this.v = v;
        }
    }

    static int read(Box b) {
        return b.v;
    }

    public static void main(String[] args) {
        long n = args.length > 0 ? Long.parseLong(args[0]) : 1_000_000L;
        Box[] boxes = new Box[1000];
        for (int i = 0; i < boxes.length; i++) {
            boxes[i] = i % 2 == 1 ? null : new Box(i);
        }
        long t0 = System.nanoTime();
        long sum = 0, npes = 0;
        for (long i = 0; i < n; i++) {
            try {
                sum += read(boxes[(int) (i % boxes.length)]);
            } catch (NullPointerException e) {
                npes++;
            }
        }
        long t1 = System.nanoTime();
        if (npes != n / 2 || sum == 0) {
            System.err.println("wrong result: npes=" + npes + " sum=" + sum);
            System.exit(5);
        }
        System.out.println("elapsed_us=" + (t1 - t0) / 1000 + " npes=" + npes);
    }
}
