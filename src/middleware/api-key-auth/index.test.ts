/** The unit of the unknown-key count (api-key-auth); the flood itself is test/edge/auth.test.ts. */
import { describe, expect, it } from "vitest";
import { clientAddress } from "./index.ts";

describe("clientAddress (who the count of unknown keys is kept for)", () => {
  it("keeps an IPv4 address whole, and names one shared bucket when there is no address", () => {
    expect(clientAddress("203.0.113.7")).toBe("203.0.113.7");
    expect(clientAddress(" 203.0.113.7 ")).toBe("203.0.113.7");
    expect(clientAddress(undefined)).toBe("unknown");
    expect(clientAddress("")).toBe("unknown");
  });

  it("counts an IPv6 address by its /64, however it is written", () => {
    const prefix = "2001:db8:1:2::/64";
    for (const address of ["2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:0DB8:0001:0002::1", "2001:db8:1:2::", "2001:db8:1:2:0:0:0:9"])
      expect(clientAddress(address), address).toBe(prefix);
    expect(clientAddress("2001:db8:1:3::1")).toBe("2001:db8:1:3::/64");
    expect(clientAddress("2001:db8::1")).toBe("2001:db8:0:0::/64");
    expect(clientAddress("::1")).toBe("0:0:0:0::/64");
    expect(clientAddress("::ffff:192.0.2.1")).toBe("0:0:0:0::/64");
  });

  it("keeps a value that is no IPv6 address as it came (never one bucket for every malformed header)", () => {
    for (const value of ["1:2:3", "1::2::3", "1:2:3:4:5:6:7:8:9", "g::1", "1:2:3:4:5:6:7:8::"])
      expect(clientAddress(value), value).toBe(value);
  });
});
