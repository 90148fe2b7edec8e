// Compiled and run by tests/java.rs; line numbers are asserted there.
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;

public class Crash {
    static class Repo {
        Map<String, Integer> data = new HashMap<>();

        int get(String key) {
            Integer v = data.get(key);
            if (v == null) {
                throw new NoSuchElementException("no key " + key);
            }
            return v;
        }
    }

    static int loadPort(Repo repo) {
        try {
            return repo.get("port");
        } catch (NoSuchElementException e) {
            throw new IllegalStateException("config broken", e);
        }
    }

    static void startServer() {
        try {
            loadPort(new Repo());
        } catch (IllegalStateException e) {
            throw new RuntimeException("server failed to start", e);
        }
    }

    static class Resource implements AutoCloseable {
        @Override
        public void close() throws Exception {
            throw new java.io.IOException("close failed");
        }
    }

    public static void main(String[] args) throws Exception {
        String mode = args.length > 0 ? args[0] : "chain";
        System.out.println("starting " + mode);
        switch (mode) {
            case "thread": {
                Thread t = new Thread(() -> {
                    List<Integer> items = new ArrayList<>();
                    items.get(3);
                }, "worker-pool-1");
                t.start();
                t.join();
                System.exit(3);
            }
            case "multiline":
                throw new IllegalArgumentException("bad request:\n  field 'name' is empty");
            case "suppressed":
                try (Resource r = new Resource()) {
                    throw new IllegalStateException("body failed");
                }
            default:
                startServer();
        }
    }
}
