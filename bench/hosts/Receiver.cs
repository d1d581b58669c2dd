// Benchmark receiver host on the C# binding (bindings/csharp): the same per-message work as
// `mllp-listen --quiet` — take the message bytes (AckOut's Message, a managed copy) and accept.
//   mono Receiver.exe [--transfer]      (LD_LIBRARY_PATH must reach libmllp.so)
// --transfer: take the bytes from the Transfer events instead (AckOut only accepts).
// Listens on 127.0.0.1, any free port; first stdout line "listening on 127.0.0.1:PORT";
// nothing per message; exits on SIGTERM/SIGINT or when stdin reaches EOF (totals on stderr).
using System;
using System.IO;
using System.Threading;
using Mllp;
using Mono.Unix;
using Mono.Unix.Native;

internal static class Receiver
{
    private static long s_messages, s_bytes;   // only touched on the reactor thread

    private static int Main(string[] args)
    {
        bool viaTransfer = Array.IndexOf(args, "--transfer") >= 0;
        using (var server = new MLLPServer())
        {
            server.LocalHost = "127.0.0.1";
            server.LocalPort = 0;
            if (viaTransfer)
            {
                server.Transfer += (s, e) => { s_bytes += e.Data.Length; };
                server.AckOut += (s, e) => { s_messages++; e.Accept = true; };
            }
            else
            {
                server.AckOut += (s, e) =>
                {
                    byte[] m = e.Message;          // the complete message
                    s_bytes += m.Length;
                    s_messages++;
                    e.Accept = true;
                };
            }
            server.StartListening();
            Console.Out.WriteLine("listening on 127.0.0.1:" + server.LocalPort);
            Console.Out.Flush();

            // Stop on SIGTERM/SIGINT, or when stdin closes (the benchmark's pipe goes away).
            var stop = new ManualResetEventSlim(false);
            var signals = new[] { new UnixSignal(Signum.SIGTERM), new UnixSignal(Signum.SIGINT) };
            new Thread(() => { UnixSignal.WaitAny(signals); stop.Set(); }) { IsBackground = true }.Start();
            new Thread(() =>
            {
                try { var b = new byte[256]; using (var i = Console.OpenStandardInput()) while (i.Read(b, 0, b.Length) > 0) { } }
                catch (IOException) { }
                stop.Set();
            }) { IsBackground = true }.Start();
            stop.Wait();
            server.Shutdown();
            Console.Error.WriteLine("csharp receiver: {0} messages, {1} bytes", s_messages, s_bytes);
        }
        return 0;
    }
}
