public class Threads {
  static volatile boolean stop;
  public static void main(String[] a) throws Exception {
    long[] counts = new long[3];
    Thread[] ts = new Thread[3];
    for (int i = 0; i < 3; i++) {
      final int k = i;
      ts[i] = new Thread(() -> { long c = 0; while (!stop) c++; counts[k] = c; });
      ts[i].start();
    }
    Thread.sleep(200);
    stop = true;
    for (Thread t : ts) t.join();
    System.out.println("java threads counted " + java.util.Arrays.toString(counts));
  }
}
