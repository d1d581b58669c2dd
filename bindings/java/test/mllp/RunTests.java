package mllp;

import org.junit.runner.Description;
import org.junit.runner.JUnitCore;
import org.junit.runner.Request;
import org.junit.runner.Result;
import org.junit.runner.manipulation.Filter;
import org.junit.runner.notification.Failure;
import org.junit.runner.notification.RunListener;

/** Runs the JUnit 4 tests, prints each result and a summary; exits 1 on failure. */
public final class RunTests {
    public static void main(String[] args) {
        String only = System.getProperty("mllp.filter", "");
        Request req = Request.classes(MLLPServerTest.class, TlsTest.class);
        if (!only.isEmpty()) {
            req = req.filterWith(new Filter() {
                public boolean shouldRun(Description d) {
                    return d.getMethodName() == null || d.getMethodName().contains(only);
                }

                public String describe() {
                    return "methods containing " + only;
                }
            });
        }
        JUnitCore core = new JUnitCore();
        core.addListener(new RunListener() {
            private long t0;
            private boolean failed;

            public void testStarted(Description d) {
                t0 = System.nanoTime();
                failed = false;
            }

            public void testFailure(Failure f) {
                failed = true;
                System.out.println("FAIL " + f.getDescription().getMethodName() + ": " + f.getMessage());
                System.out.println(f.getTrace());
            }

            public void testAssumptionFailure(Failure f) {
                System.out.println("SKIP " + f.getDescription().getMethodName() + ": " + f.getMessage());
            }

            public void testFinished(Description d) {
                if (!failed) {
                    System.out.printf("ok   %s (%d ms)%n", d.getMethodName(), (System.nanoTime() - t0) / 1_000_000);
                }
            }
        });
        Result r = core.run(req);
        System.out.printf("%n%d tests, %d failed, %d skipped, %.1f s%n", r.getRunCount(), r.getFailureCount(),
                r.getIgnoreCount() + r.getAssumptionFailureCount(), r.getRunTime() / 1000.0);
        System.exit(r.wasSuccessful() ? 0 : 1);
    }
}
