import threading, time, sys
n = int(sys.argv[1]) if len(sys.argv) > 1 else 1
secs = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
stop = False
counts = [0] * n
def spin(i):
    c = 0
    while not stop:
        c += 1
    counts[i] = c
ts = [threading.Thread(target=spin, args=(i,)) for i in range(n)]
for t in ts: t.start()
time.sleep(secs)
stop = True
for t in ts: t.join()
print("spun", n, "threads:", sum(counts) > 0, counts)
