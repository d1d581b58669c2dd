// A receiver: prints each HL7 message it gets and acknowledges it.
//   mono Receiver.exe [port]      (Mllp.dll and libmllp.so beside it: see README.md)
// Stop with Ctrl+C.
using System;
using System.Text;
using System.Threading;
using Mllp;

internal static class Receiver
{
    private static int Main(string[] args)
    {
        int port = args.Length > 0 ? int.Parse(args[0]) : 2575;
        using (var server = new MLLPServer())
        using (var stop = new ManualResetEventSlim(false))
        {
            server.LocalPort = port;
            server.ConnectionRequest += (s, e) => Console.WriteLine("connection request from {0}:{1}", e.Address, e.Port);
            server.Connected += (s, e) => Console.WriteLine("[{0}] connected: {1}", e.ConnectionId, e.Description);
            server.Disconnected += (s, e) => Console.WriteLine("[{0}] disconnected: {1}", e.ConnectionId, e.Description);
            server.Error += (s, e) => Console.Error.WriteLine("[{0}] error {1}: {2}", e.ConnectionId, e.ErrorCode, e.Description);
            server.AckOut += (s, e) =>
            {
                // The complete message; HL7 segments end with CR.
                string text = Encoding.UTF8.GetString(e.Message);
                Console.WriteLine("[{0}] message #{1} ({2} bytes):", e.ConnectionId, e.MessageSeq, e.Message.Length);
                foreach (var segment in text.Split(new[] { '\r' }, StringSplitOptions.RemoveEmptyEntries))
                    Console.WriteLine("    " + segment);
                e.Accept = true;   // positive acknowledgement (the default); false sends a NAK
                Console.WriteLine("[{0}] acknowledged", e.ConnectionId);
            };
            Console.CancelKeyPress += (s, e) => { e.Cancel = true; stop.Set(); };

            server.StartListening();
            Console.WriteLine("mllp {0}: listening on {1}:{2} (Ctrl+C to stop)",
                              MLLPServer.LibraryVersion, server.LocalHost, server.LocalPort);
            stop.Wait();
            server.Shutdown();
        }
        return 0;
    }
}
